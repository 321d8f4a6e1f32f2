-- Demo legacy CRM, modelled on SugarCRM CE 6.5: char(36) ids, soft-delete flag,
-- date_modified, picklist codes, and e-mails kept in a separate table joined
-- through email_addr_bean_rel (both with their own date_modified, as in SuiteCRM; the demo's
-- opportunities_contacts has none: the delta finds its changes by row hash).
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
    assigned_user_id          varchar(36)
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
    account_id              varchar(36),
    date_entered            timestamp,
    date_modified           timestamp,
    deleted                 smallint NOT NULL DEFAULT 0,
    assigned_user_id          varchar(36)
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
    account_id    varchar(36),
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
    deleted        smallint NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS idx_opp_con_opp ON opportunities_contacts (opportunity_id);
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
