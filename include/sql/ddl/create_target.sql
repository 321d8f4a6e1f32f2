-- The new CRM, modelled on a modern CRM (Twenty/HubSpot style): UUID ids, ISO
-- country codes, E.164 phones. legacy_id is the upsert key of every load; the migrated_* columns
-- say which lot run first inserted a row (the survivor half of crm_migration.crosswalk), which
-- legacy version it holds (hash, modification time: newer wins) for the freeze comparison.
CREATE SCHEMA IF NOT EXISTS crm;
CREATE TABLE IF NOT EXISTS crm.companies (
    id                  uuid PRIMARY KEY,
    legacy_id           text NOT NULL UNIQUE,
    name                text NOT NULL,
    domain              text,
    phone               text,
    address_street      text,
    address_city        text,
    address_postal_code text,
    address_country     char(2),
    industry            text,
    company_type        text,
    created_at          timestamptz,
    updated_at          timestamptz,
    deleted_at          timestamptz,     -- set by the delta sync when the legacy row was deleted
    migrated_lot_id       text,          -- the lot run that first inserted the row (rollback deletes it)
    migrated_first_run_id text,
    migrated_last_run_id  text,
    migrated_row_hash     text,          -- hash of the legacy row version this row was built from (freeze diff)
    migrated_legacy_modified timestamptz -- its legacy modification time: an older version never replaces it
);
CREATE TABLE IF NOT EXISTS crm.people (
    id           uuid PRIMARY KEY,
    legacy_id    text NOT NULL UNIQUE,
    first_name   text,
    last_name    text NOT NULL,
    email        text,
    phone        text,
    mobile       text,
    job_title    text,
    city         text,
    country      char(2),
    lead_source  text,
    company_id   uuid REFERENCES crm.companies (id) ON DELETE SET NULL,
    created_at   timestamptz,
    updated_at   timestamptz,
    deleted_at   timestamptz,
    migrated_lot_id       text,
    migrated_first_run_id text,
    migrated_last_run_id  text,
    migrated_row_hash     text,          -- hash of the legacy row version this row was built from (freeze diff)
    migrated_legacy_modified timestamptz -- its legacy modification time: an older version never replaces it
);
CREATE INDEX IF NOT EXISTS idx_people_email ON crm.people (email);
CREATE INDEX IF NOT EXISTS idx_people_last_name ON crm.people (lower(last_name));
CREATE INDEX IF NOT EXISTS idx_companies_domain ON crm.companies (domain);
CREATE TABLE IF NOT EXISTS crm.opportunities (
    id           uuid PRIMARY KEY,
    legacy_id    text NOT NULL UNIQUE,
    name         text NOT NULL,
    amount       numeric(18, 2),
    currency     char(3),
    stage        text,
    probability  numeric(5, 2),
    close_date   date,
    company_id   uuid REFERENCES crm.companies (id) ON DELETE SET NULL,
    person_id    uuid REFERENCES crm.people (id) ON DELETE SET NULL,
    created_at   timestamptz,
    updated_at   timestamptz,
    deleted_at   timestamptz,
    migrated_lot_id       text,
    migrated_first_run_id text,
    migrated_last_run_id  text,
    migrated_row_hash     text,          -- hash of the legacy row version this row was built from (freeze diff)
    migrated_legacy_modified timestamptz -- its legacy modification time: an older version never replaces it
);
-- Targets created before the freeze comparison and the newer-wins rule get their columns.
ALTER TABLE crm.companies ADD COLUMN IF NOT EXISTS migrated_row_hash text,
                          ADD COLUMN IF NOT EXISTS migrated_legacy_modified timestamptz;
ALTER TABLE crm.people ADD COLUMN IF NOT EXISTS migrated_row_hash text,
                       ADD COLUMN IF NOT EXISTS migrated_legacy_modified timestamptz;
ALTER TABLE crm.opportunities ADD COLUMN IF NOT EXISTS migrated_row_hash text,
                              ADD COLUMN IF NOT EXISTS migrated_legacy_modified timestamptz;
