-- Rows a run inserted into $table: first inserted by that run (the load keeps no
-- pre-image for them), or recorded as 'insert' in the pre-image (a row the crosswalk knew as merged that
-- became a survivor). crm_migration.ops.rollback.
SELECT legacy_id FROM $table WHERE migrated_lot_id = :l AND migrated_first_run_id = :r
UNION
SELECT legacy_id FROM crm_migration.pre_image WHERE lot_id = :l AND run_id = :r AND entity = :e
  AND action = 'insert'
