-- Advance the entity's watermark to the newest legacy date_modified extracted by this run
-- (never backwards). Runs in the transaction of the load it covers; the value it replaces is
-- kept first (the first one per run wins) so a rollback can put it back.
INSERT INTO crm_migration.watermark_pre_image (lot_id, run_id, entity, modified_at, had_watermark)
SELECT %(lot_id)s, %(run_id)s, %(entity)s, w.modified_at, w.entity IS NOT NULL
FROM (SELECT 1) one LEFT JOIN crm_migration.watermark w ON w.entity = %(entity)s
ON CONFLICT (lot_id, run_id, entity) DO NOTHING;

INSERT INTO crm_migration.watermark AS w (entity, modified_at, run_id)
SELECT %(entity)s, max((r.data ->> 'date_modified')::timestamp) AT TIME ZONE 'UTC', %(run_id)s
FROM stg.raw r
WHERE r.lot_id = %(lot_id)s AND r.run_id = %(run_id)s AND r.entity = %(entity)s
HAVING max((r.data ->> 'date_modified')::timestamp) IS NOT NULL
ON CONFLICT (entity) DO UPDATE SET
    modified_at = GREATEST(w.modified_at, EXCLUDED.modified_at), run_id = EXCLUDED.run_id, updated_at = now();
