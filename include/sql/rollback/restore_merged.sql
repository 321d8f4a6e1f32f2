-- Crosswalk entries of merged rows the run changed or turned into survivors, back as they were.
INSERT INTO crm_migration.merged AS x (entity, legacy_id, new_id, merged_into, lot_id, first_run_id, last_run_id)
SELECT c.entity, c.legacy_id, c.new_id, c.merged_into, c.orig_lot_id, c.orig_first_run_id, c.last_run_id
FROM crm_migration.crosswalk_pre_image c
WHERE c.lot_id = :l AND c.run_id = :r AND c.entity = :e
ON CONFLICT (entity, legacy_id) DO UPDATE
SET new_id = EXCLUDED.new_id, merged_into = EXCLUDED.merged_into, last_run_id = EXCLUDED.last_run_id
