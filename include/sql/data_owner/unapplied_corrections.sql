-- Of the (legacy id, field) pairs in :p (a JSON array of pairs), the ids with a correction not applied yet,
-- or whose row is quarantined (its corrections must be tried again).
SELECT DISTINCT p ->> 0
FROM jsonb_array_elements(CAST(:p AS jsonb)) p
WHERE NOT EXISTS (SELECT 1 FROM crm_migration.correction_applied a
                  WHERE a.entity = :e AND a.legacy_id = p ->> 0 AND a.field = p ->> 1)
   OR EXISTS (SELECT 1 FROM crm_migration.legacy_ledger g
              WHERE g.entity = :e AND g.legacy_id = p ->> 0 AND g.fate = 'quarantined')
