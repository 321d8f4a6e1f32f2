-- Staged rows of a run that the target holds in a newer legacy version (newer wins): after the load,
-- every applied row carries the staged time, so a newer one in the target means the staged one was
-- turned away.
SELECT count(*)
FROM $staged s
JOIN $target t ON t.legacy_id = s.legacy_id
WHERE s.lot_id = %(lot_id)s AND s.run_id = %(run_id)s AND t.migrated_legacy_modified > s.$modified
