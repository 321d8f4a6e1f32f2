-- Upsert one chunk of staged rows into crm.companies on the target id; the column lists are generated from
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
INSERT INTO crm.companies AS t (id, legacy_id, name, company_type, industry, address_street, address_city, address_postal_code, address_country, phone, domain, parent_company_id, owner_id, created_at, updated_at,
    migrated_lot_id, migrated_first_run_id, migrated_last_run_id, migrated_row_hash, migrated_legacy_modified)
SELECT s.id, s.legacy_id, s.name, s.company_type, s.industry, s.address_street, s.address_city, s.address_postal_code, s.address_country, s.phone, s.domain, s.parent_company_id, s.owner_id, s.created_at, s.updated_at,
       %(lot_id)s, %(run_id)s, %(run_id)s, s.row_hash, s.crm_version
FROM $chunk s
ON CONFLICT (id) DO UPDATE SET
    legacy_id = EXCLUDED.legacy_id,
    name = EXCLUDED.name,
    company_type = EXCLUDED.company_type,
    industry = EXCLUDED.industry,
    address_street = EXCLUDED.address_street,
    address_city = EXCLUDED.address_city,
    address_postal_code = EXCLUDED.address_postal_code,
    address_country = EXCLUDED.address_country,
    phone = EXCLUDED.phone,
    domain = EXCLUDED.domain,
    parent_company_id = EXCLUDED.parent_company_id,
    owner_id = EXCLUDED.owner_id,
    created_at = EXCLUDED.created_at,
    updated_at = EXCLUDED.updated_at,
    deleted_at = NULL, migrated_last_run_id = EXCLUDED.migrated_last_run_id,
    migrated_row_hash = EXCLUDED.migrated_row_hash, migrated_legacy_modified = EXCLUDED.migrated_legacy_modified
WHERE (t.legacy_id <> EXCLUDED.legacy_id
       OR t.migrated_legacy_modified IS NULL OR EXCLUDED.migrated_legacy_modified IS NULL
       OR EXCLUDED.migrated_legacy_modified >= t.migrated_legacy_modified)
  AND (t.legacy_id, t.name, t.company_type, t.industry, t.address_street, t.address_city, t.address_postal_code, t.address_country, t.phone, t.domain, t.parent_company_id, t.owner_id, t.created_at, t.updated_at, t.deleted_at, t.migrated_row_hash)
      IS DISTINCT FROM
      (EXCLUDED.legacy_id, EXCLUDED.name, EXCLUDED.company_type, EXCLUDED.industry, EXCLUDED.address_street, EXCLUDED.address_city, EXCLUDED.address_postal_code, EXCLUDED.address_country, EXCLUDED.phone, EXCLUDED.domain, EXCLUDED.parent_company_id, EXCLUDED.owner_id, EXCLUDED.created_at, EXCLUDED.updated_at, NULL::timestamptz, EXCLUDED.migrated_row_hash);
