-- Before a hard delete of parents (:ids in $table): the pre-images of the children (entity :c, table
-- $child, foreign key $fk) whose reference the delete will empty, so a rollback restores it.
INSERT INTO crm_migration.pre_image (lot_id, run_id, entity, legacy_id, action, row_before, target_id)
SELECT :l, :r, :c, c.legacy_id, 'update', to_jsonb(c), c.id
FROM $child c JOIN $table t ON t.id = c.$fk
WHERE t.legacy_id = ANY(:ids)
ON CONFLICT (lot_id, run_id, entity, legacy_id) DO NOTHING
