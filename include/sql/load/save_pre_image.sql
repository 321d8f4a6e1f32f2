-- Pre-images of the target rows this chunk of staged rows is about to change, for rollback.
-- 'update': the target row of the staged id (its cluster's) exists and was not inserted by this run:
-- its whole value is kept.
-- 'insert': the row is absent from the target although the crosswalk knows it as merged. Rows new
-- to the migration need none: rollback finds them by migrated_first_run_id. The first pass of a
-- run wins, so a rerun of the same run cannot overwrite what rollback needs.
-- Lookups are LATERAL ... LIMIT 1 on unique keys: one index probe per row whatever the planner's
-- statistics say (the tables grow from empty during a load; stale stats chose quadratic plans).
INSERT INTO crm_migration.pre_image (lot_id, run_id, entity, legacy_id, action, row_before, target_id)
SELECT %(lot_id)s, %(run_id)s, %(entity)s, s.legacy_id, 'update', t.row_before, s.id
FROM $chunk s
CROSS JOIN LATERAL (SELECT to_jsonb(t0) AS row_before, t0.migrated_lot_id, t0.migrated_first_run_id
                    FROM $target t0 WHERE t0.id = s.id LIMIT 1) t
WHERE (t.migrated_lot_id, t.migrated_first_run_id) IS DISTINCT FROM (%(lot_id)s, %(run_id)s)
ON CONFLICT (lot_id, run_id, entity, legacy_id) DO NOTHING;

INSERT INTO crm_migration.pre_image (lot_id, run_id, entity, legacy_id, action, row_before, target_id)
SELECT %(lot_id)s, %(run_id)s, %(entity)s, s.legacy_id, 'insert', NULL, s.id
FROM $chunk s
CROSS JOIN LATERAL (SELECT 1 FROM crm_migration.merged m0
                    WHERE m0.entity = %(entity)s AND m0.legacy_id = s.legacy_id LIMIT 1) m
WHERE NOT EXISTS (SELECT 1 FROM $target t WHERE t.id = s.id)
ON CONFLICT (lot_id, run_id, entity, legacy_id) DO NOTHING;
