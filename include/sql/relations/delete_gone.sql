-- Links the migration wrote (migrated_lot_id set) whose legacy link is no longer live: deleted in the
-- legacy CRM, or an end no longer active. Links made in the new CRM itself are left alone. $in_scope: a delta's
-- scope (stages/relations._scope), or nothing.
DELETE FROM $table t
WHERE t.migrated_lot_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM pg_temp.relation_mapped m WHERE m.key_id = t.$key AND m.value_id = t.$value)$in_scope
