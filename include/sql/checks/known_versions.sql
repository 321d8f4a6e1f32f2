-- The freeze's checksums by key range (crm_migration.stages.checksums): per legacy id the version (row hash)
-- the target accounts for and the fate classify.sql gives a legacy row holding that version, in its order:
-- loaded (an active target row), merged (into an active survivor), then the ledger's excluded or quarantined.
SELECT DISTINCT ON (legacy_id) legacy_id, row_hash, fate FROM (
    SELECT legacy_id, migrated_row_hash AS row_hash, 'loaded' AS fate, 1 AS p FROM $target
    WHERE deleted_at IS NULL AND migrated_row_hash IS NOT NULL
    UNION ALL
    SELECT m.legacy_id, m.row_hash, 'merged', 2 FROM crm_migration.merged m
    JOIN $target sv ON sv.id = m.new_id AND sv.deleted_at IS NULL
    WHERE m.entity = :e AND m.row_hash IS NOT NULL
    UNION ALL
    SELECT legacy_id, row_hash, fate, 3 FROM crm_migration.legacy_ledger
    WHERE entity = :e AND fate IN ('excluded', 'quarantined')
) k
ORDER BY legacy_id, p
