-- A delta comparing hashes (crm_migration.stages.checksums, stages.run): per legacy id the version (row hash) the
-- migration last applied: the target row's first, then the merged entry's, then the ledger's.
SELECT DISTINCT ON (legacy_id) legacy_id, row_hash FROM (
    SELECT legacy_id, migrated_row_hash AS row_hash, 1 AS p FROM $target WHERE migrated_row_hash IS NOT NULL
    UNION ALL
    SELECT legacy_id, row_hash, 2 FROM crm_migration.merged WHERE entity = :e AND row_hash IS NOT NULL
    UNION ALL
    SELECT legacy_id, row_hash, 3 FROM crm_migration.legacy_ledger WHERE entity = :e
) k
ORDER BY legacy_id, p
