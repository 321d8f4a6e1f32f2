-- Pre-images of the target rows this chunk of staged rows is about to change, for rollback.
-- 'update': the row exists in the target, its whole value is kept. 'insert': the row is absent from
-- the target although the crosswalk knows it (it was merged or deleted before). Rows new to the
-- crosswalk need none: rollback finds them by crosswalk.first_run_id. The first pass of a run wins,
-- so a rerun of the same run cannot overwrite what rollback needs.
-- Lookups are LATERAL ... LIMIT 1 on unique keys: one index probe per row whatever the planner's
-- statistics say (the tables grow from empty during a load; stale stats chose quadratic plans).
INSERT INTO crm_migration.pre_image (lot_id, run_id, entity, legacy_id, action, row_before)
SELECT %(lot_id)s, %(run_id)s, %(entity)s, s.legacy_id,
       CASE WHEN t.row_before IS NULL THEN 'insert' ELSE 'update' END, t.row_before
FROM $chunk s
LEFT JOIN LATERAL (SELECT to_jsonb(t0) AS row_before FROM $target t0 WHERE t0.legacy_id = s.legacy_id LIMIT 1) t
       ON true
LEFT JOIN LATERAL (SELECT x0.lot_id, x0.first_run_id FROM crm_migration.crosswalk x0
                   WHERE x0.entity = %(entity)s AND x0.legacy_id = s.legacy_id LIMIT 1) x ON true
WHERE x.first_run_id IS NOT NULL                                   -- known before: not new in this run
  AND NOT (x.lot_id = %(lot_id)s AND x.first_run_id = %(run_id)s)  -- nor inserted by this run's first pass
ON CONFLICT (lot_id, run_id, entity, legacy_id) DO NOTHING;
