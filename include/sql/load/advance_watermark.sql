-- Advance the entity's watermark to the newest legacy date_modified extracted by this run
-- (never backwards). Runs in the transaction of the load it covers.
INSERT INTO crm_migration.watermark AS w (entity, modified_at, run_id)
SELECT %(entity)s, max((r.data ->> 'date_modified')::timestamp) AT TIME ZONE 'UTC', %(run_id)s
FROM stg.raw r
WHERE r.lot_id = %(lot_id)s AND r.run_id = %(run_id)s AND r.entity = %(entity)s
HAVING max((r.data ->> 'date_modified')::timestamp) IS NOT NULL
ON CONFLICT (entity) DO UPDATE SET
    modified_at = GREATEST(w.modified_at, EXCLUDED.modified_at), run_id = EXCLUDED.run_id, updated_at = now();
