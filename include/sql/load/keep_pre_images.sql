-- The pre-images (for rollback) of the rows of $table (t) that $rows selects, before a relink or a hierarchy's
-- cut changes them. A row this run inserted has none: a rollback deletes it (crm_migration.stages.content).
INSERT INTO crm_migration.pre_image (lot_id, run_id, entity, legacy_id, action, row_before, target_id)
SELECT :l, :r, :e, t.legacy_id, 'update', to_jsonb(t), t.id FROM $table t $rows
  AND (t.migrated_lot_id IS DISTINCT FROM :l OR t.migrated_first_run_id IS DISTINCT FROM :r)
ON CONFLICT (lot_id, run_id, entity, legacy_id) DO NOTHING
