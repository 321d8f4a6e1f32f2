-- Crosswalk for one chunk: every loaded row points at its new id. Later lots remap
-- foreign keys through it; merged rows are added by crosswalk_merged.sql once all chunks are in.
-- An existing entry this changes keeps its pre-image (first pass of a run wins) for rollback.
INSERT INTO crm_migration.crosswalk_pre_image (lot_id, run_id, entity, legacy_id, new_id, merged_into, last_run_id)
SELECT %(lot_id)s, %(run_id)s, x.entity, x.legacy_id, x.new_id, x.merged_into, x.last_run_id
FROM $chunk s
CROSS JOIN LATERAL (SELECT * FROM crm_migration.crosswalk x0
                    WHERE x0.entity = %(entity)s AND x0.legacy_id = s.legacy_id LIMIT 1) x
WHERE (x.new_id, x.merged_into) IS DISTINCT FROM (s.id, NULL::text)
ON CONFLICT (lot_id, run_id, entity, legacy_id) DO NOTHING;

INSERT INTO crm_migration.crosswalk AS x (entity, legacy_id, new_id, merged_into, lot_id, first_run_id, last_run_id)
SELECT %(entity)s, s.legacy_id, s.id, NULL, %(lot_id)s, %(run_id)s, %(run_id)s FROM $chunk s
ON CONFLICT (entity, legacy_id) DO UPDATE SET
    new_id = EXCLUDED.new_id, merged_into = NULL, last_run_id = EXCLUDED.last_run_id
WHERE (x.new_id, x.merged_into, x.last_run_id) IS DISTINCT FROM (EXCLUDED.new_id, NULL, EXCLUDED.last_run_id);
