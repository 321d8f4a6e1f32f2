-- Rows a run updated or deleted, back as they were before it (their pre-images), in $table.
INSERT INTO $table ($columns)
SELECT $b_columns
FROM crm_migration.pre_image p, jsonb_populate_record(NULL::$table, p.row_before) b
WHERE p.lot_id = :l AND p.run_id = :r AND p.entity = :e AND p.action = 'update'
ON CONFLICT (id) DO UPDATE SET $updates
