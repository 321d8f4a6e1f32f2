"""A run of the migration: the table of stages and gates each DAG runs (pipeline), the delta sync and the
freeze (delta), rollback from pre-images (rollback), the nightly rehearsal (rehearsal).

May import: every layer but dag.
"""
