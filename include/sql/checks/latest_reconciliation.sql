-- A run's reconciliation of an entity, if it was checked after the entity's last load of the run.
SELECT r.ok, r.counts, r.failures
FROM crm_migration.reconciliation r
LEFT JOIN crm_migration.stage_timing t
       ON t.lot_id = r.lot_id AND t.run_id = r.run_id AND t.entity = r.entity AND t.stage = 'load'
WHERE r.lot_id = :l AND r.run_id = :r AND r.entity = :e
  AND (t.finished_at IS NULL OR r.checked_at >= t.finished_at)
