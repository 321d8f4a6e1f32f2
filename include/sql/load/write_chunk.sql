-- One chunk's write in one statement: the upsert (upsert_target.sql, pinned in tests/golden/), the
-- pre-image of each row it changed as the row was before (the sub-statements of one statement share its
-- snapshot: t0 reads the row as it was before the upsert), and what the load left in each row it wrote
-- (crm_migration.written: the content the freeze compares the target with, and the legacy parents the
-- references should point at). Rows the upsert left alone get no pre-image and are not counted. A column
-- the edit policy `flag` kept at the new CRM's value keeps the migration's earlier value in `written`, so
-- the conflict stays visible (drifted) until a data owner settles it. The staged row of a written row is
-- found by its index (lot, run, legacy id): joining the chunk subquery to `up` was quadratic (20k x 20k).
WITH up AS (
$upsert
    RETURNING t.*
), pre AS (
    INSERT INTO crm_migration.pre_image (lot_id, run_id, entity, legacy_id, action, row_before, target_id,
                                         written_before)
    SELECT %(lot_id)s, %(run_id)s, %(entity)s, up.legacy_id, 'update', to_jsonb(t0), up.id,
           coalesce((SELECT to_jsonb(w0) FROM crm_migration.written w0 WHERE w0.entity = %(entity)s
                     AND w0.id = up.id), 'null'::jsonb)
    FROM up JOIN $target t0 ON t0.id = up.id
    WHERE (t0.migrated_lot_id, t0.migrated_first_run_id) IS DISTINCT FROM (%(lot_id)s, %(run_id)s)
    ON CONFLICT (lot_id, run_id, entity, legacy_id) DO NOTHING
), wr AS (
    INSERT INTO crm_migration.written AS w (entity, id, legacy_id, content, links, lot_id, run_id)
    SELECT %(entity)s, up.id, up.legacy_id, $content || coalesce(k.flagged, '{}'::jsonb),
           coalesce(s.links, '{}'::jsonb), %(lot_id)s, %(run_id)s
    FROM up JOIN $staged s ON s.lot_id = %(lot_id)s AND s.run_id = %(run_id)s AND s.legacy_id = up.legacy_id
    LEFT JOIN crm_migration.edit_conflict k ON k.lot_id = %(lot_id)s AND k.run_id = %(run_id)s
         AND k.entity = %(entity)s AND k.id = up.id
    ON CONFLICT (entity, id) DO UPDATE SET legacy_id = EXCLUDED.legacy_id, content = EXCLUDED.content,
        links = EXCLUDED.links, lot_id = EXCLUDED.lot_id, run_id = EXCLUDED.run_id
)
SELECT count(*) FROM up
