-- The record of what our loads wrote (crm_migration.written), back as it was before the run.
INSERT INTO crm_migration.written (entity, id, legacy_id, content, links, lot_id, run_id)
SELECT b.entity, b.id, b.legacy_id, b.content, b.links, b.lot_id, b.run_id
FROM crm_migration.pre_image p, jsonb_populate_record(NULL::crm_migration.written, p.written_before) b
WHERE p.lot_id = :l AND p.run_id = :r AND p.entity = :e AND p.action = 'update'
  AND jsonb_typeof(p.written_before) = 'object'
ON CONFLICT (entity, id) DO UPDATE
SET legacy_id = EXCLUDED.legacy_id, content = EXCLUDED.content, links = EXCLUDED.links,
    lot_id = EXCLUDED.lot_id, run_id = EXCLUDED.run_id
