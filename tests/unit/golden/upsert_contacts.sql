-- Upsert one chunk of staged rows into crm.people on the target id; the column lists are generated from
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
INSERT INTO crm.people AS t (id, legacy_id, first_name, last_name, email, phone, mobile, job_title, city, postal_code, birth_date, country, lead_source, company_id, reports_to_id, owner_id, created_at, updated_at,
    migrated_lot_id, migrated_first_run_id, migrated_last_run_id, migrated_row_hash, migrated_legacy_modified)
SELECT s.id, s.legacy_id, s.first_name, s.last_name, s.email, s.phone, s.mobile, s.job_title, s.city, s.postal_code, s.birth_date, s.country, s.lead_source, s.company_id, s.reports_to_id, s.owner_id, s.created_at, s.updated_at,
       %(lot_id)s, %(run_id)s, %(run_id)s, s.row_hash, s.crm_version
FROM $chunk s
ON CONFLICT (id) DO UPDATE SET
    legacy_id = EXCLUDED.legacy_id,
    first_name = EXCLUDED.first_name,
    last_name = EXCLUDED.last_name,
    email = EXCLUDED.email,
    phone = EXCLUDED.phone,
    mobile = EXCLUDED.mobile,
    job_title = EXCLUDED.job_title,
    city = EXCLUDED.city,
    postal_code = EXCLUDED.postal_code,
    birth_date = EXCLUDED.birth_date,
    country = EXCLUDED.country,
    lead_source = EXCLUDED.lead_source,
    company_id = EXCLUDED.company_id,
    reports_to_id = EXCLUDED.reports_to_id,
    owner_id = EXCLUDED.owner_id,
    created_at = EXCLUDED.created_at,
    updated_at = EXCLUDED.updated_at,
    deleted_at = NULL, migrated_last_run_id = EXCLUDED.migrated_last_run_id,
    migrated_row_hash = EXCLUDED.migrated_row_hash, migrated_legacy_modified = EXCLUDED.migrated_legacy_modified
WHERE (t.legacy_id <> EXCLUDED.legacy_id
       OR t.migrated_legacy_modified IS NULL OR EXCLUDED.migrated_legacy_modified IS NULL
       OR EXCLUDED.migrated_legacy_modified >= t.migrated_legacy_modified)
  AND (t.legacy_id, t.first_name, t.last_name, t.email, t.phone, t.mobile, t.job_title, t.city, t.postal_code, t.birth_date, t.country, t.lead_source, t.company_id, t.reports_to_id, t.owner_id, t.created_at, t.updated_at, t.deleted_at, t.migrated_row_hash)
      IS DISTINCT FROM
      (EXCLUDED.legacy_id, EXCLUDED.first_name, EXCLUDED.last_name, EXCLUDED.email, EXCLUDED.phone, EXCLUDED.mobile, EXCLUDED.job_title, EXCLUDED.city, EXCLUDED.postal_code, EXCLUDED.birth_date, EXCLUDED.country, EXCLUDED.lead_source, EXCLUDED.company_id, EXCLUDED.reports_to_id, EXCLUDED.owner_id, EXCLUDED.created_at, EXCLUDED.updated_at, NULL::timestamptz, EXCLUDED.migrated_row_hash);
