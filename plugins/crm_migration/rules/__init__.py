"""The plain row functions: the cleanse (repairs, exclusions, quarantine reasons) and the transform (the new
CRM's model, value maps, references through the crosswalk; the target's table and column names).

May import: model, source.
"""
