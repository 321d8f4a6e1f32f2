-- A relation to values (a person's e-mails): the live legacy rows (pg_temp.relation_legacy) with their key
-- mapped to its active target row through the crosswalk, the value kept as it is: pg_temp.relation_ends,
-- one row per legacy row (key_id NULL: its row is missing, excluded, quarantined or deleted);
-- pg_temp.relation_mapped, one row per (target row, value), the primary first.
CREATE TEMP TABLE relation_ends ON COMMIT DROP AS
SELECT l.*, kt.id AS key_id, l.legacy_value AS value_id
FROM pg_temp.relation_legacy l
LEFT JOIN crm_migration.crosswalk k ON k.entity = :key_entity AND k.legacy_id = l.legacy_key
LEFT JOIN $key_table kt ON kt.id = k.new_id AND kt.deleted_at IS NULL;
CREATE TEMP TABLE relation_mapped ON COMMIT DROP AS
SELECT DISTINCT ON (key_id, value_id) *
FROM pg_temp.relation_ends
WHERE key_id IS NOT NULL
ORDER BY key_id, value_id, is_primary DESC, legacy_key;
CREATE UNIQUE INDEX ON pg_temp.relation_mapped (key_id, value_id);
