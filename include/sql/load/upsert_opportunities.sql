-- Upsert one chunk of staged rows into crm.opportunities on legacy_id.
INSERT INTO crm.opportunities AS t (id, legacy_id, name, amount, currency, stage, probability, close_date,
                                    company_id, person_id, created_at, updated_at,
    migrated_lot_id, migrated_first_run_id, migrated_last_run_id)
SELECT id, legacy_id, name, amount, currency, stage, probability, close_date, company_id, person_id,
       created_at, updated_at,
       %(lot_id)s, %(run_id)s, %(run_id)s
FROM $chunk s
ON CONFLICT (legacy_id) DO UPDATE SET
    name = EXCLUDED.name, amount = EXCLUDED.amount, currency = EXCLUDED.currency, stage = EXCLUDED.stage,
    probability = EXCLUDED.probability, close_date = EXCLUDED.close_date, company_id = EXCLUDED.company_id,
    person_id = EXCLUDED.person_id, created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,
    deleted_at = NULL, migrated_last_run_id = EXCLUDED.migrated_last_run_id
WHERE (t.name, t.amount, t.currency, t.stage, t.probability, t.close_date, t.company_id, t.person_id,
       t.created_at, t.updated_at, t.deleted_at)
      IS DISTINCT FROM
      (EXCLUDED.name, EXCLUDED.amount, EXCLUDED.currency, EXCLUDED.stage, EXCLUDED.probability,
       EXCLUDED.close_date, EXCLUDED.company_id, EXCLUDED.person_id, EXCLUDED.created_at, EXCLUDED.updated_at,
       NULL::timestamptz);
