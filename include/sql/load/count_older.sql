-- Staged rows of a run that the target holds in a newer legacy version (newer wins): after the load,
-- every applied row carries the staged version (its time, at most the legacy clock at the read), so a newer one in the target means the staged one was
-- turned away.
SELECT count(*)
FROM $staged s
JOIN $target t ON t.legacy_id = s.legacy_id
JOIN crm_migration.extract_run x ON x.lot_id = s.lot_id AND x.run_id = s.run_id AND x.entity = %(entity)s
WHERE s.lot_id = %(lot_id)s AND s.run_id = %(run_id)s
  AND t.migrated_legacy_modified > LEAST(s.$modified, x.legacy_clock)
