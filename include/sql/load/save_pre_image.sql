-- Keep the pre-image of every target row this chunk ($tmp) is about to change in $target.
-- The first run's pre-image wins, so a rerun cannot overwrite what rollback needs.
INSERT INTO crm_migration.pre_image (lot_id, run_id, entity, legacy_id, action, row_before)
SELECT %(lot_id)s, %(run_id)s, %(entity)s, s.legacy_id,
       CASE WHEN t.legacy_id IS NULL THEN 'insert' ELSE 'update' END,
       CASE WHEN t.legacy_id IS NULL THEN NULL ELSE to_jsonb(t) END
FROM $tmp s LEFT JOIN $target t ON t.legacy_id = s.legacy_id
ON CONFLICT (lot_id, run_id, entity, legacy_id) DO NOTHING;
