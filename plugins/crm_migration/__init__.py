"""crm-cutover's migration as plain Python, testable without Airflow, in layers. A layer imports only the
layers below it (tests/unit/test_layers.py holds it to that, reading every import with ast), so the room for a
change is found by what it is about:

    dag       Airflow's task callables, the DAG wiring and defaults           (the only Airflow imports)
    ops       a run as a table of stages and gates; the delta sync and the freeze; rollback; rehearsals
    reports   the import report: JSON, HTML, SVG charts
    checks    the Soda gates; the reconciliation by id and by content against the legacy CRM
    stages    the stage runners (extract, cleanse, dedupe, transform: run; load), what the target holds
              (content), data owners' corrections and waivers, the extract contract check
    matching  blocking, Fellegi-Sunter estimation and scoring (Splink), partitions, clusters
    rules     the plain row functions of the cleanse and the transform
    source    reading the legacy CRM: SQL or export files, its clock, row hashes, anonymisation
    model     configuration (migration.yaml, entity files, lot files), the target's DDL, the database,
              errors, masking, a stage's (lot, run) slice

The demo legacy CRM, a sample export and finding or starting PostgreSQL live apart, in crm_demo.
"""
