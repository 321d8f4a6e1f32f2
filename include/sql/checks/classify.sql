-- Each legacy row of pg_temp.legacy_snapshot (id, hash, modification time, as read again from the legacy CRM)
-- classified against the target ($target: the entity's table) by joins by id: loaded, merged, quarantined,
-- excluded (by the run, or the ledger's last fate of this version), changed_since_read (changed in the
-- legacy CRM after the run read it), survivor_missing, stale or lost. crm_migration.checks.reconcile.
WITH s AS (SELECT legacy_id, min(row_hash) AS row_hash, max(modified) AS modified, count(*) AS n
           FROM pg_temp.legacy_snapshot GROUP BY legacy_id)
SELECT s.legacy_id,
  CASE
    WHEN t.legacy_id IS NOT NULL AND t.deleted_at IS NULL AND s.n = 1
         AND (t.migrated_row_hash = s.row_hash OR t.migrated_legacy_modified > s.modified) THEN 'loaded'
    WHEN m.legacy_id IS NOT NULL AND m.row_hash = s.row_hash AND s.n = 1
         AND sv.id IS NOT NULL AND sv.deleted_at IS NULL THEN 'merged'
    WHEN rq.legacy_id IS NOT NULL THEN 'quarantined'
    WHEN rx.legacy_id IS NOT NULL THEN 'excluded'
    WHEN g.fate = 'excluded' AND g.row_hash = s.row_hash AND s.n = 1 THEN 'excluded'
    WHEN g.fate = 'quarantined' AND (g.row_hash = s.row_hash OR s.n > 1) THEN 'quarantined'
    WHEN s.modified > :read_at THEN 'changed_since_read'
    WHEN m.legacy_id IS NOT NULL AND m.row_hash = s.row_hash THEN 'survivor_missing'
    WHEN t.legacy_id IS NOT NULL OR m.legacy_id IS NOT NULL OR g.legacy_id IS NOT NULL THEN 'stale'
    ELSE 'lost'
  END AS fate
FROM s
LEFT JOIN $target t ON t.legacy_id = s.legacy_id
LEFT JOIN crm_migration.merged m ON m.entity = :e AND m.legacy_id = s.legacy_id
LEFT JOIN $target sv ON sv.id = m.new_id
LEFT JOIN crm_migration.legacy_ledger g ON g.entity = :e AND g.legacy_id = s.legacy_id
LEFT JOIN (SELECT DISTINCT legacy_id FROM stg.quarantine WHERE lot_id = :l AND run_id = :r AND entity = :e) rq
       ON rq.legacy_id = s.legacy_id
LEFT JOIN (SELECT DISTINCT legacy_id FROM stg.excluded WHERE lot_id = :l AND run_id = :r AND entity = :e) rx
       ON rx.legacy_id = s.legacy_id
