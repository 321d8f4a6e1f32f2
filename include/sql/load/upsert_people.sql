-- Upsert one chunk of staged rows into crm.people on legacy_id.
INSERT INTO crm.people AS t (id, legacy_id, first_name, last_name, email, phone, mobile, job_title,
                             city, country, lead_source, company_id, created_at, updated_at,
    migrated_lot_id, migrated_first_run_id, migrated_last_run_id)
SELECT id, legacy_id, first_name, last_name, email, phone, mobile, job_title,
       city, country, lead_source, company_id, created_at, updated_at,
       %(lot_id)s, %(run_id)s, %(run_id)s
FROM $chunk s
ON CONFLICT (legacy_id) DO UPDATE SET
    first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name, email = EXCLUDED.email,
    phone = EXCLUDED.phone, mobile = EXCLUDED.mobile, job_title = EXCLUDED.job_title,
    city = EXCLUDED.city, country = EXCLUDED.country, lead_source = EXCLUDED.lead_source,
    company_id = EXCLUDED.company_id, created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,
    deleted_at = NULL, migrated_last_run_id = EXCLUDED.migrated_last_run_id
WHERE (t.first_name, t.last_name, t.email, t.phone, t.mobile, t.job_title, t.city, t.country,
       t.lead_source, t.company_id, t.created_at, t.updated_at, t.deleted_at)
      IS DISTINCT FROM
      (EXCLUDED.first_name, EXCLUDED.last_name, EXCLUDED.email, EXCLUDED.phone, EXCLUDED.mobile,
       EXCLUDED.job_title, EXCLUDED.city, EXCLUDED.country, EXCLUDED.lead_source, EXCLUDED.company_id,
       EXCLUDED.created_at, EXCLUDED.updated_at, NULL::timestamptz);
