-- The target link table brought to the mapped legacy links: every pair inserted, or updated where its
-- columns differ. Links the migration wrote whose legacy link is gone are deleted by delete_gone.sql.
INSERT INTO $table AS t ($key, $value$extra_cols, is_primary, legacy_key, legacy_value, migrated_lot_id,
                         migrated_run_id)
SELECT m.key_id, m.value_id$extra_m, m.is_primary, m.legacy_key, m.legacy_value, :l, :r
FROM pg_temp.relation_mapped m
ON CONFLICT ($key, $value) DO UPDATE
SET $extra_set is_primary = EXCLUDED.is_primary, legacy_key = EXCLUDED.legacy_key,
    legacy_value = EXCLUDED.legacy_value, migrated_lot_id = EXCLUDED.migrated_lot_id,
    migrated_run_id = EXCLUDED.migrated_run_id, migrated_at = now()
WHERE ($extra_t t.is_primary, t.legacy_key, t.legacy_value, t.migrated_lot_id IS NULL)
      IS DISTINCT FROM ($extra_x EXCLUDED.is_primary, EXCLUDED.legacy_key, EXCLUDED.legacy_value, false)
