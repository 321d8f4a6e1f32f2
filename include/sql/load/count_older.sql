-- Staged rows of one chunk that the target already holds in a newer legacy version (newer wins).
SELECT count(*)
FROM $chunk s
CROSS JOIN LATERAL (SELECT t0.migrated_legacy_modified FROM $target t0
                    WHERE t0.legacy_id = s.legacy_id LIMIT 1) t
WHERE t.migrated_legacy_modified > s.$modified
