-- Upsert one chunk of staged rows into $target on the target id; the column lists are generated from
-- transform.TARGET_COLUMNS (tests/unit/test_sql_golden.py pins the rendered statement). The id is the
-- cluster's (clusters.py): when another member of a merged customer survives, the same target row
-- takes its legacy id and values -- never a second row.
-- The row keeps the hash of the legacy version it was built from and that version's legacy time,
-- clamped to the legacy clock at the read (crm_version: a row dated in the future is the version of
-- its read, so it never outranks a real edit made later): a staged row older than what the target
-- holds never replaces it (a lot load landing after a delta synced the row); equal times re-apply,
-- so a rerun is a no-op. A new survivor of the cluster always applies (the row it replaces may have
-- been deleted at a newer time). count_older.sql counts the rows this rule turned away, after the
-- last chunk.
INSERT INTO $target AS t ($columns,
    migrated_lot_id, migrated_first_run_id, migrated_last_run_id, migrated_row_hash, migrated_legacy_modified)
SELECT $source_columns,
       %(lot_id)s, %(run_id)s, %(run_id)s, s.row_hash, s.crm_version
FROM $chunk s
ON CONFLICT (id) DO UPDATE SET
    $set_list,
    deleted_at = NULL, migrated_last_run_id = EXCLUDED.migrated_last_run_id,
    migrated_row_hash = EXCLUDED.migrated_row_hash, migrated_legacy_modified = EXCLUDED.migrated_legacy_modified
WHERE (t.legacy_id <> EXCLUDED.legacy_id
       OR t.migrated_legacy_modified IS NULL OR EXCLUDED.migrated_legacy_modified IS NULL
       OR EXCLUDED.migrated_legacy_modified >= t.migrated_legacy_modified)
  AND ($target_values, t.deleted_at, t.migrated_row_hash)
      IS DISTINCT FROM
      ($excluded_values, NULL::timestamptz, EXCLUDED.migrated_row_hash);
