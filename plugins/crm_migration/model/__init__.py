"""The model: configuration (settings: migration.yaml, the config directory, YAML; spec: the entity files;
config: the lot files), the target's DDL (ddl), the database (db), error kinds (errors), personal-data
masking (masking), a stage's (lot, run) slice (slices: batches, timing, samples).

Imports nothing of the other layers.
"""
