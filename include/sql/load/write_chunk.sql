-- One chunk's write in one statement: the upsert (upsert_target.sql, pinned in tests/unit/golden/), the
-- pre-image of each row it changed as the row was before (the sub-statements of one statement share its
-- snapshot: t0 reads the row as it was before the upsert), and what the load left in each row it wrote
-- (crm_migration.written: the content the freeze compares the target with, and the legacy parents the
-- references should point at). Rows the upsert left alone get no pre-image and are not counted. A column
-- the edit policy `flag` kept at the new CRM's value keeps the migration's earlier value in `written`, so
-- the conflict stays visible (drifted) until a data owner settles it. Look-ups are LATERAL ... LIMIT 1 on
-- unique keys, one index probe per row whatever the statistics of a slice just written say (a join the
-- planner thought was one row scanned the whole slice per row: 40+ s a chunk at 237k rows).
WITH up AS (
$upsert
    RETURNING t.*
), pre AS (
    INSERT INTO crm_migration.pre_image (lot_id, run_id, entity, legacy_id, action, row_before, target_id,
                                         written_before)
    SELECT %(lot_id)s, %(run_id)s, %(entity)s, up.legacy_id, 'update', to_jsonb(t0), up.id,
           coalesce((SELECT to_jsonb(w0) FROM crm_migration.written w0 WHERE w0.entity = %(entity)s
                     AND w0.id = up.id), 'null'::jsonb)
    FROM up CROSS JOIN LATERAL (SELECT t1.* FROM $target t1 WHERE t1.id = up.id LIMIT 1) t0
    WHERE (t0.migrated_lot_id, t0.migrated_first_run_id) IS DISTINCT FROM (%(lot_id)s, %(run_id)s)
    ON CONFLICT (lot_id, run_id, entity, legacy_id) DO NOTHING
), wr AS (
    INSERT INTO crm_migration.written AS w (entity, id, legacy_id, content, links, lot_id, run_id)
    SELECT %(entity)s, up.id, up.legacy_id, $content || coalesce(k.flagged, '{}'::jsonb),
           coalesce(s.links, '{}'::jsonb), %(lot_id)s, %(run_id)s
    FROM up
    CROSS JOIN LATERAL (SELECT s0.links FROM $staged s0 WHERE s0.lot_id = %(lot_id)s AND s0.run_id = %(run_id)s
                        AND s0.legacy_id = up.legacy_id LIMIT 1) s
    LEFT JOIN LATERAL (SELECT k0.flagged FROM crm_migration.edit_conflict k0 WHERE k0.lot_id = %(lot_id)s
                       AND k0.run_id = %(run_id)s AND k0.entity = %(entity)s AND k0.id = up.id LIMIT 1) k ON TRUE
    ON CONFLICT (entity, id) DO UPDATE SET legacy_id = EXCLUDED.legacy_id, content = EXCLUDED.content,
        links = EXCLUDED.links, lot_id = EXCLUDED.lot_id, run_id = EXCLUDED.run_id
)
SELECT count(*) FROM up
