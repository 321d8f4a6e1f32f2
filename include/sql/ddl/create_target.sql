-- The new CRM, modelled on a modern CRM (Twenty/HubSpot style): UUID ids, ISO
-- country codes, E.164 phones. legacy_id is the upsert key of every load.
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
    updated_at          timestamptz
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
    company_id   uuid REFERENCES crm.companies (id),
    created_at   timestamptz,
    updated_at   timestamptz
);
