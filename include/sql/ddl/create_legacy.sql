-- Demo legacy CRM in the SuiteCRM 7 layout (the columns the migration reads, with SuiteCRM's names and
-- types): char(36) ids, a soft-delete flag and date_modified on every table, picklist codes; a contact's
-- and an opportunity's company kept in the link tables accounts_contacts / accounts_opportunities,
-- an opportunity's contacts in opportunities_contacts, e-mails in email_addresses joined through
-- email_addr_bean_rel; converted leads point to their contact, account and opportunity; activities
-- (calls, meetings, notes, tasks) point to any record through parent_type / parent_id.
CREATE TABLE IF NOT EXISTS users (
    id            varchar(36) PRIMARY KEY,
    user_name     varchar(60),
    first_name    varchar(30),
    last_name     varchar(30),
    status        varchar(100),
    date_entered  timestamp,
    date_modified timestamp,
    deleted       smallint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS accounts (
    id                         varchar(36) PRIMARY KEY,
    name                       varchar(150),
    account_type               varchar(50),
    industry                   varchar(50),
    billing_address_street     varchar(150),
    billing_address_city       varchar(100),
    billing_address_postalcode varchar(20),
    billing_address_country    varchar(255),
    phone_office               varchar(100),
    website                    varchar(255),
    date_entered               timestamp,
    date_modified              timestamp,
    deleted                    smallint NOT NULL DEFAULT 0,
    assigned_user_id          varchar(36),
    parent_id                  varchar(36)
);
CREATE TABLE IF NOT EXISTS contacts (
    id                      varchar(36) PRIMARY KEY,
    salutation              varchar(255),
    first_name              varchar(100),
    last_name               varchar(100),
    title                   varchar(100),
    phone_work              varchar(100),
    phone_mobile            varchar(100),
    primary_address_city    varchar(100),
    primary_address_country varchar(255),
    lead_source             varchar(255),
    date_entered            timestamp,
    date_modified           timestamp,
    deleted                 smallint NOT NULL DEFAULT 0,
    assigned_user_id          varchar(36),
    reports_to_id           varchar(36),
    birthdate               date,
    primary_address_postalcode varchar(20)
);
CREATE TABLE IF NOT EXISTS leads (
    id                      varchar(36) PRIMARY KEY,
    first_name              varchar(100),
    last_name               varchar(100),
    account_name            varchar(255),
    status                  varchar(100),
    lead_source             varchar(100),
    phone_work              varchar(100),
    primary_address_country varchar(255),
    converted               smallint NOT NULL DEFAULT 0,
    contact_id              varchar(36),
    account_id              varchar(36),
    opportunity_id          varchar(36),
    date_entered            timestamp,
    date_modified           timestamp,
    deleted                 smallint NOT NULL DEFAULT 0,
    assigned_user_id          varchar(36)
);
CREATE TABLE IF NOT EXISTS opportunities (
    id            varchar(36) PRIMARY KEY,
    name          varchar(50),
    amount        numeric(26, 6),
    currency_id   varchar(36),
    sales_stage   varchar(255),
    probability   double precision,
    date_closed   date,
    lead_source   varchar(50),
    date_entered  timestamp,
    date_modified timestamp,
    deleted       smallint NOT NULL DEFAULT 0,
    assigned_user_id          varchar(36)
);
CREATE TABLE IF NOT EXISTS opportunities_contacts (
    id             varchar(36) PRIMARY KEY,
    contact_id     varchar(36),
    opportunity_id varchar(36),
    contact_role   varchar(50),
    date_modified  timestamp,
    deleted        smallint NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS idx_opp_con_opp ON opportunities_contacts (opportunity_id);
CREATE TABLE IF NOT EXISTS accounts_contacts (
    id            varchar(36) PRIMARY KEY,
    contact_id    varchar(36),
    account_id    varchar(36),
    date_modified timestamp,
    deleted       smallint NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS idx_account_contact ON accounts_contacts (contact_id);
CREATE TABLE IF NOT EXISTS accounts_opportunities (
    id             varchar(36) PRIMARY KEY,
    opportunity_id varchar(36),
    account_id     varchar(36),
    date_modified  timestamp,
    deleted        smallint NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS idx_account_opportunity ON accounts_opportunities (opportunity_id);
CREATE TABLE IF NOT EXISTS email_addresses (
    id                 varchar(36) PRIMARY KEY,
    email_address      varchar(255),
    email_address_caps varchar(255),
    invalid_email      smallint NOT NULL DEFAULT 0,
    opt_out            smallint NOT NULL DEFAULT 0,
    date_modified      timestamp,
    deleted            smallint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS email_addr_bean_rel (
    id               varchar(36) PRIMARY KEY,
    email_address_id varchar(36) NOT NULL,
    bean_id          varchar(36) NOT NULL,
    bean_module      varchar(100) NOT NULL,
    primary_address  smallint NOT NULL DEFAULT 0,
    date_modified    timestamp,
    deleted          smallint NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS idx_eabr_bean ON email_addr_bean_rel (bean_id, bean_module);
CREATE TABLE IF NOT EXISTS calls (
    id               varchar(36) PRIMARY KEY,
    name             varchar(50),
    date_entered     timestamp,
    date_modified    timestamp,
    assigned_user_id varchar(36),
    deleted          smallint NOT NULL DEFAULT 0,
    duration_hours   integer,
    duration_minutes integer,
    date_start       timestamp,
    date_end         timestamp,
    parent_type      varchar(255),
    status           varchar(100),
    direction        varchar(100),
    parent_id        varchar(36),
    description      text
);
CREATE TABLE IF NOT EXISTS meetings (
    id               varchar(36) PRIMARY KEY,
    name             varchar(50),
    date_entered     timestamp,
    date_modified    timestamp,
    assigned_user_id varchar(36),
    deleted          smallint NOT NULL DEFAULT 0,
    location         varchar(50),
    duration_hours   integer,
    duration_minutes integer,
    date_start       timestamp,
    date_end         timestamp,
    parent_type      varchar(100),
    status           varchar(100),
    parent_id        varchar(36),
    description      text
);
CREATE TABLE IF NOT EXISTS notes (
    id               varchar(36) PRIMARY KEY,
    name             varchar(255),
    date_entered     timestamp,
    date_modified    timestamp,
    assigned_user_id varchar(36),
    deleted          smallint NOT NULL DEFAULT 0,
    parent_type      varchar(255),
    parent_id        varchar(36),
    contact_id       varchar(36),
    description      text
);
CREATE TABLE IF NOT EXISTS tasks (
    id               varchar(36) PRIMARY KEY,
    name             varchar(50),
    date_entered     timestamp,
    date_modified    timestamp,
    assigned_user_id varchar(36),
    deleted          smallint NOT NULL DEFAULT 0,
    status           varchar(100),
    date_due         timestamp,
    date_start       timestamp,
    parent_type      varchar(255),
    parent_id        varchar(36),
    contact_id       varchar(36),
    priority         varchar(100),
    description      text
);
