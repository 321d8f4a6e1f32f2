-- Upsert one chunk of staged rows into crm.companies on legacy_id.
INSERT INTO crm.companies AS t (id, legacy_id, name, domain, phone, address_street, address_city,
                                address_postal_code, address_country, industry, company_type,
                                created_at, updated_at,
    migrated_lot_id, migrated_first_run_id, migrated_last_run_id)
SELECT id, legacy_id, name, domain, phone, address_street, address_city,
       address_postal_code, address_country, industry, company_type, created_at, updated_at,
       %(lot_id)s, %(run_id)s, %(run_id)s
FROM $chunk s
ON CONFLICT (legacy_id) DO UPDATE SET
    name = EXCLUDED.name, domain = EXCLUDED.domain, phone = EXCLUDED.phone,
    address_street = EXCLUDED.address_street, address_city = EXCLUDED.address_city,
    address_postal_code = EXCLUDED.address_postal_code, address_country = EXCLUDED.address_country,
    industry = EXCLUDED.industry, company_type = EXCLUDED.company_type,
    created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,
    deleted_at = NULL, migrated_last_run_id = EXCLUDED.migrated_last_run_id
WHERE (t.name, t.domain, t.phone, t.address_street, t.address_city, t.address_postal_code,
       t.address_country, t.industry, t.company_type, t.created_at, t.updated_at, t.deleted_at)
      IS DISTINCT FROM
      (EXCLUDED.name, EXCLUDED.domain, EXCLUDED.phone, EXCLUDED.address_street, EXCLUDED.address_city,
       EXCLUDED.address_postal_code, EXCLUDED.address_country, EXCLUDED.industry, EXCLUDED.company_type,
       EXCLUDED.created_at, EXCLUDED.updated_at, NULL::timestamptz);
