-- Crosswalk for one chunk: every loaded row, and every row merged into it,
-- points at the survivor's new id. Later lots remap foreign keys through it.
INSERT INTO crm_migration.crosswalk AS x (entity, legacy_id, new_id, merged_into, lot_id, first_run_id, last_run_id)
SELECT %(entity)s, s.legacy_id, s.id, NULL, %(lot_id)s, %(run_id)s, %(run_id)s FROM $tmp s
UNION ALL
SELECT %(entity)s, m.legacy_id, s.id, m.survivor_legacy_id, %(lot_id)s, %(run_id)s, %(run_id)s
FROM $tmp s
JOIN stg.merge_map m ON m.survivor_legacy_id = s.legacy_id
 AND m.lot_id = %(lot_id)s AND m.run_id = %(run_id)s AND m.entity = %(entity)s
 AND m.legacy_id <> m.survivor_legacy_id
ON CONFLICT (entity, legacy_id) DO UPDATE SET
    new_id = EXCLUDED.new_id, merged_into = EXCLUDED.merged_into, last_run_id = EXCLUDED.last_run_id;
