-- legacy id -> the version (row hash) last accounted for: the ledger's, a merged row's, the target's.
SELECT legacy_id, row_hash FROM crm_migration.legacy_ledger WHERE entity = :e
UNION ALL
SELECT legacy_id, row_hash FROM crm_migration.merged WHERE entity = :e AND row_hash IS NOT NULL
UNION ALL
SELECT legacy_id, migrated_row_hash FROM $table WHERE migrated_row_hash IS NOT NULL
