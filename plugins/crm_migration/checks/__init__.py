"""The checks: the Soda v4 gates between the stages (quality); the reconciliation of every legacy row by id
and by content against the target, after each load and at the freeze (reconcile).

May import: model, source, rules, matching, stages.
"""
