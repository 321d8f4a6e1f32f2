-- Crosswalk for one chunk: every loaded row points at its new id. Later lots remap
-- foreign keys through it; merged rows are added by crosswalk_merged.sql once all chunks are in.
INSERT INTO crm_migration.crosswalk AS x (entity, legacy_id, new_id, merged_into, lot_id, first_run_id, last_run_id)
SELECT %(entity)s, s.legacy_id, s.id, NULL, %(lot_id)s, %(run_id)s, %(run_id)s FROM $tmp s
ON CONFLICT (entity, legacy_id) DO UPDATE SET
    new_id = EXCLUDED.new_id, merged_into = NULL, last_run_id = EXCLUDED.last_run_id;
