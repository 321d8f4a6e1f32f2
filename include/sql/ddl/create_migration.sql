-- Bookkeeping of the migration itself: crosswalk, pre-images, gate results,
-- stage timings, run reports.
CREATE SCHEMA IF NOT EXISTS crm_migration;
-- Legacy rows merged into a survivor: they have no target row of their own.
CREATE TABLE IF NOT EXISTS crm_migration.merged (
    entity          text NOT NULL,
    legacy_id       text NOT NULL,
    new_id          uuid NOT NULL,
    merged_into     text NOT NULL,  -- survivor legacy id
    lot_id          text NOT NULL,
    first_run_id    text NOT NULL,
    last_run_id     text NOT NULL,
    PRIMARY KEY (entity, legacy_id)
);
CREATE TABLE IF NOT EXISTS crm_migration.pre_image (
    lot_id     text NOT NULL,
    run_id     text NOT NULL,
    entity     text NOT NULL,
    legacy_id  text NOT NULL,
    action     text NOT NULL CHECK (action IN ('insert', 'update')),
    row_before jsonb,
    PRIMARY KEY (lot_id, run_id, entity, legacy_id)
);
CREATE TABLE IF NOT EXISTS crm_migration.gate_result (
    lot_id     text NOT NULL,
    run_id     text NOT NULL,
    entity     text NOT NULL,
    stage      text NOT NULL,
    check_name text NOT NULL,
    column_name text,
    outcome    text NOT NULL,
    value      double precision,
    detail     jsonb,
    checked_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_gate_result_run ON crm_migration.gate_result (lot_id, run_id);
CREATE TABLE IF NOT EXISTS crm_migration.stage_timing (
    lot_id   text NOT NULL,
    run_id   text NOT NULL,
    entity   text NOT NULL,
    stage    text NOT NULL,
    rows_in  bigint,
    rows_out bigint,
    seconds  double precision NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (lot_id, run_id, entity, stage)
);
CREATE TABLE IF NOT EXISTS crm_migration.run_report (
    lot_id      text NOT NULL,
    run_id      text NOT NULL,
    dry_run     boolean NOT NULL,
    identity_ok boolean NOT NULL,
    report      jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (lot_id, run_id)
);
-- Delta sync: per entity, the legacy date_modified up to which rows are migrated.
CREATE TABLE IF NOT EXISTS crm_migration.watermark (
    entity      text PRIMARY KEY,
    modified_at timestamptz NOT NULL,
    run_id      text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- Deletions applied to the target by the delta sync (soft: deleted_at set; hard: row removed).
CREATE TABLE IF NOT EXISTS crm_migration.deletion (
    lot_id     text NOT NULL,
    run_id     text NOT NULL,
    entity     text NOT NULL,
    legacy_id  text NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('soft_deleted', 'hard_deleted')),
    mode       text NOT NULL CHECK (mode IN ('soft', 'hard')),
    PRIMARY KEY (lot_id, run_id, entity, legacy_id)
);
-- The watermark each run replaced, for rollback.
CREATE TABLE IF NOT EXISTS crm_migration.watermark_pre_image (
    lot_id        text NOT NULL,
    run_id        text NOT NULL,
    entity        text NOT NULL,
    modified_at   timestamptz,
    had_watermark boolean NOT NULL,
    PRIMARY KEY (lot_id, run_id, entity)
);
-- Merged entries a run changed or removed (a merged row that now survives), for rollback.
CREATE TABLE IF NOT EXISTS crm_migration.crosswalk_pre_image (
    lot_id      text NOT NULL,
    run_id      text NOT NULL,
    entity      text NOT NULL,
    legacy_id   text NOT NULL,
    new_id      uuid NOT NULL,
    merged_into text,
    last_run_id text NOT NULL,
    orig_lot_id       text NOT NULL,  -- the merged entry's own lot and first run
    orig_first_run_id text NOT NULL,
    PRIMARY KEY (lot_id, run_id, entity, legacy_id)
);
-- The crosswalk (legacy id -> new id) later lots remap foreign keys through: loaded rows are
-- the target tables themselves (no second write per row: the load runs at COPY speed), merged
-- rows point at their survivor's new id.
CREATE OR REPLACE VIEW crm_migration.crosswalk AS
    SELECT 'accounts'::text AS entity, legacy_id, id AS new_id, NULL::text AS merged_into,
           migrated_lot_id AS lot_id, migrated_first_run_id AS first_run_id, migrated_last_run_id AS last_run_id
    FROM crm.companies
    UNION ALL
    SELECT 'contacts'::text, legacy_id, id, NULL::text, migrated_lot_id, migrated_first_run_id, migrated_last_run_id
    FROM crm.people
    UNION ALL
    SELECT 'opportunities'::text, legacy_id, id, NULL::text, migrated_lot_id, migrated_first_run_id,
           migrated_last_run_id
    FROM crm.opportunities
    UNION ALL
    SELECT entity, legacy_id, new_id, merged_into, lot_id, first_run_id, last_run_id FROM crm_migration.merged;
