-- The live legacy links of a relation (pg_temp.relation_legacy, read from the legacy CRM), each end mapped to
-- its target row through the crosswalk (a merged row stands for its survivor) when that row is active:
-- pg_temp.relation_ends, one row per legacy link (an end NULL: missing, excluded, quarantined or deleted);
-- pg_temp.relation_mapped, one row per target pair (the primary link first, then the smallest legacy ids).
CREATE TEMP TABLE relation_ends ON COMMIT DROP AS
SELECT l.*, kt.id AS key_id, vt.id AS value_id
FROM pg_temp.relation_legacy l
LEFT JOIN crm_migration.crosswalk k ON k.entity = :key_entity AND k.legacy_id = l.legacy_key
LEFT JOIN $key_table kt ON kt.id = k.new_id AND kt.deleted_at IS NULL
LEFT JOIN crm_migration.crosswalk v ON v.entity = :value_entity AND v.legacy_id = l.legacy_value
LEFT JOIN $value_table vt ON vt.id = v.new_id AND vt.deleted_at IS NULL;
CREATE TEMP TABLE relation_mapped ON COMMIT DROP AS
SELECT DISTINCT ON (key_id, value_id) *
FROM pg_temp.relation_ends
WHERE key_id IS NOT NULL AND value_id IS NOT NULL
ORDER BY key_id, value_id, is_primary DESC, legacy_key, legacy_value;
CREATE UNIQUE INDEX ON pg_temp.relation_mapped (key_id, value_id);
