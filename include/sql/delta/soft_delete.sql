-- Rows gone from the legacy CRM, soft-deleted in $table (ids :ids). The deletion's legacy time is the row's
-- newest version (the extract's date_modified, else the target's updated_at): a later load of an older
-- version cannot undo it.
UPDATE $table t
SET deleted_at = d.at, migrated_legacy_modified = GREATEST(t.migrated_legacy_modified, d.at)
FROM (SELECT t0.legacy_id,
             coalesce((SELECT (CASE WHEN r.data ->> 'date_modified' ~ '^[0-9]{4}-'
                                    THEN (r.data ->> 'date_modified')::timestamp END) AT TIME ZONE 'UTC'
                       FROM stg.extract r
                       WHERE r.lot_id = :l AND r.run_id = :r AND r.entity = :e AND r.legacy_id = t0.legacy_id
                       LIMIT 1),
                      t0.updated_at) AS at
      FROM $table t0 WHERE t0.legacy_id = ANY(:ids)) d
WHERE t.legacy_id = d.legacy_id AND t.deleted_at IS NULL
