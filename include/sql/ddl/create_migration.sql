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
    row_hash        text,           -- hash of the legacy row version merged (freeze diff)
    PRIMARY KEY (entity, legacy_id)
);
ALTER TABLE crm_migration.merged ADD COLUMN IF NOT EXISTS row_hash text;
-- a target row's merged members (a delta's relations: every legacy row standing for a target row it touches)
CREATE INDEX IF NOT EXISTS idx_merged_new_id ON crm_migration.merged (entity, new_id);
CREATE TABLE IF NOT EXISTS crm_migration.pre_image (
    lot_id     text NOT NULL,
    run_id     text NOT NULL,
    entity     text NOT NULL,
    legacy_id  text NOT NULL,
    action     text NOT NULL CHECK (action IN ('insert', 'update')),
    row_before jsonb,
    PRIMARY KEY (lot_id, run_id, entity, legacy_id)
);
ALTER TABLE crm_migration.pre_image ADD COLUMN IF NOT EXISTS target_id uuid;  -- the target row's id
-- what crm_migration.written held for the row before the run wrote it (JSON null: nothing; SQL NULL: the
-- run did not change it), so a rollback puts back the migration's own record with the row
ALTER TABLE crm_migration.pre_image ADD COLUMN IF NOT EXISTS written_before jsonb;
-- Runs applied to the target, in order: a rollback takes back the later runs that touched the same rows.
CREATE TABLE IF NOT EXISTS crm_migration.applied_run (
    seq        bigserial,
    lot_id     text NOT NULL,
    run_id     text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (lot_id, run_id)
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
-- Delta sync: per (entity, scope) the legacy clock up to which every change is migrated. A scope is
-- the lot that owns the rows (its source_filter): phased lots of one entity each keep their own.
-- The value is the legacy database's clock at extract start minus a safety margin, never the
-- largest date_modified seen (a future-dated row would push it past changes not yet made).
CREATE TABLE IF NOT EXISTS crm_migration.watermark (
    entity      text NOT NULL,
    scope       text NOT NULL,
    modified_at timestamptz NOT NULL,
    run_id      text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entity, scope)
);
-- What each extract saw: the legacy clock at its start and the rows dated after it (clock skew).
CREATE TABLE IF NOT EXISTS crm_migration.extract_run (
    lot_id        text NOT NULL,
    run_id        text NOT NULL,
    entity        text NOT NULL,
    legacy_clock  timestamptz NOT NULL,
    windows       jsonb NOT NULL DEFAULT '{}'::jsonb,  -- delta: scope -> window start (inclusive)
    clock_skewed  integer NOT NULL DEFAULT 0,
    PRIMARY KEY (lot_id, run_id, entity)
);
-- Legacy rows last excluded or quarantined, with the hash of that version (loaded and merged rows carry
-- theirs in the target row and crm_migration.merged). The reconciliation, the freeze comparison and
-- change detection by hash read it.
CREATE TABLE IF NOT EXISTS crm_migration.legacy_ledger (
    entity      text NOT NULL,
    legacy_id   text NOT NULL,
    row_hash    text NOT NULL,
    fate        text NOT NULL CHECK (fate IN ('loaded', 'merged', 'excluded', 'quarantined')),
    reason      text,
    lot_id      text NOT NULL,
    run_id      text NOT NULL,
    PRIMARY KEY (entity, legacy_id)
);
-- Checksums by key range of the legacy CRM as the migration last followed them (crm_migration.stages.checksums):
-- 'ids:<entity>', every legacy id, kept by each delta's load (hard deletes); 'links:<link table>', every legacy
-- link row, kept by each sync of the relation. A lot's load or a rollback removes an entity's.
CREATE TABLE IF NOT EXISTS crm_migration.key_range_sums (
    what    text NOT NULL,
    bucket  text NOT NULL,
    n       bigint NOT NULL,
    s       numeric NOT NULL,
    PRIMARY KEY (what, bucket)
);
-- Load outcomes the report shows: staged rows the target already held in a newer legacy version.
CREATE TABLE IF NOT EXISTS crm_migration.load_outcome (
    lot_id         text NOT NULL,
    run_id         text NOT NULL,
    entity         text NOT NULL,
    rejected_older integer NOT NULL,
    PRIMARY KEY (lot_id, run_id, entity)
);
-- children a load pointed at its rows, which arrived after them (child entity -> rows)
ALTER TABLE crm_migration.load_outcome ADD COLUMN IF NOT EXISTS relinked jsonb;
-- Transform outcomes the report shows: references given their configured default (unknown owners).
CREATE TABLE IF NOT EXISTS crm_migration.transform_outcome (
    lot_id    text NOT NULL,
    run_id    text NOT NULL,
    entity    text NOT NULL,
    defaulted jsonb NOT NULL,   -- reference field -> rows that got the field's default
    PRIMARY KEY (lot_id, run_id, entity)
);
-- Runs rolled back: a rollback is not replayed (after a newer run it would revert that run's rows).
-- A run loaded again after its rollback leaves this table (it can be rolled back again).
CREATE TABLE IF NOT EXISTS crm_migration.rollback_log (
    lot_id         text NOT NULL,
    run_id         text NOT NULL,
    rolled_back_by text NOT NULL,
    rolled_back_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (lot_id, run_id)
);
-- The later runs the last dry run of a rollback listed: a cascade takes back exactly those, or is refused.
CREATE TABLE IF NOT EXISTS crm_migration.rollback_plan (
    lot_id     text NOT NULL,
    run_id     text NOT NULL,
    later      jsonb NOT NULL,
    planned_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (lot_id, run_id)
);
-- Reconciliation by id against the target, after each load (the loaded gate and the report).
CREATE TABLE IF NOT EXISTS crm_migration.reconciliation (
    lot_id     text NOT NULL,
    run_id     text NOT NULL,
    entity     text NOT NULL,
    ok         boolean NOT NULL,
    counts     jsonb NOT NULL,
    failures   jsonb NOT NULL,   -- masked legacy ids per failure kind
    checked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (lot_id, run_id, entity)
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
-- The watermarks each run replaced, for rollback.
CREATE TABLE IF NOT EXISTS crm_migration.watermark_pre_image (
    lot_id        text NOT NULL,
    run_id        text NOT NULL,
    entity        text NOT NULL,
    scope         text NOT NULL,
    modified_at   timestamptz,
    had_watermark boolean NOT NULL,
    PRIMARY KEY (lot_id, run_id, entity, scope)
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
-- The crosswalk view (legacy id -> new id) is generated from the entity specs: ddl.crosswalk_sql().
-- The probabilistic dedupe's model (Splink's m/u per field level, the prior) as a lot run learned it:
-- the delta sync scores its few rows with it instead of learning from them; the report shows it.
CREATE TABLE IF NOT EXISTS crm_migration.match_model (
    lot_id     text NOT NULL,
    run_id     text NOT NULL,
    entity     text NOT NULL,
    model      jsonb NOT NULL,
    learned_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (lot_id, run_id, entity)
);
-- How many migrated rows each target table held after the migration last wrote to it (load, delete,
-- rollback). A table this says held rows that is now missing or holds none of them was dropped,
-- renamed or emptied outside the migration (or this is the wrong database): the run fails naming it
-- instead of re-creating it empty and loading into it as if nothing had been there.
CREATE TABLE IF NOT EXISTS crm_migration.target_history (
    entity       text PRIMARY KEY,
    target_table text NOT NULL,
    rows_held    bigint NOT NULL,
    lot_id       text NOT NULL,
    run_id       text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
-- What the migration last left in each target row: its content (mapped columns, references apart, as
-- JSON) and, per reference, the legacy parent it was built from ([entity, legacy id, default legacy id]).
-- The freeze and every load compare the target row with it: a difference is an edit made outside the
-- migration (drifted); a reference is checked against where its legacy parent is now (crm_migration.stages.content).
CREATE TABLE IF NOT EXISTS crm_migration.written (
    entity     text NOT NULL,
    id         uuid NOT NULL,
    legacy_id  text NOT NULL,
    content    jsonb NOT NULL,
    links      jsonb NOT NULL DEFAULT '{}'::jsonb,
    lot_id     text NOT NULL,
    run_id     text NOT NULL,
    PRIMARY KEY (entity, id)
);
-- Target rows a load found edited outside the migration (in the new CRM) and how the entity's edit
-- policy resolved them: kept = the columns whose new-CRM value was kept (flag, target_wins).
CREATE TABLE IF NOT EXISTS crm_migration.edit_conflict (
    lot_id    text NOT NULL,
    run_id    text NOT NULL,
    entity    text NOT NULL,
    id        uuid NOT NULL,
    legacy_id text NOT NULL,
    edited    text[] NOT NULL,   -- the columns changed in the target since the migration wrote them
    kept      text[] NOT NULL,   -- of those, the ones whose target value the load kept
    policy    text NOT NULL,
    flagged   jsonb,             -- policy flag: the migration's earlier values of the kept columns
    PRIMARY KEY (lot_id, run_id, entity, id)
);
-- Data owners' corrections each run applied at cleanse (config data_owner/corrections.csv), for the report.
CREATE TABLE IF NOT EXISTS crm_migration.correction_applied (
    lot_id    text NOT NULL,
    run_id    text NOT NULL,
    entity    text NOT NULL,
    legacy_id text NOT NULL,
    field     text NOT NULL,
    reason    text NOT NULL,
    who       text NOT NULL,
    PRIMARY KEY (lot_id, run_id, entity, legacy_id, field)
);
-- The schema this target was last brought to (a hash of the generated DDL): a prepare task whose DDL is the
-- same runs none of it (ALTER TABLE takes a lock that made prepare deadlock with another lot's report).
CREATE TABLE IF NOT EXISTS crm_migration.schema_state (
    one       boolean PRIMARY KEY DEFAULT true CHECK (one),
    ddl_hash  text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
-- A hierarchy's cycle in the legacy CRM (A's parent is B, B's parent is A) cut at its member with the smallest
-- legacy id: that row's reference is left empty on purpose (crm_migration.stages.content.break_cycles).
CREATE TABLE IF NOT EXISTS crm_migration.link_cut (
    entity    text NOT NULL,
    legacy_id text NOT NULL,
    col       text NOT NULL,
    lot_id    text NOT NULL,
    run_id    text NOT NULL,
    cut_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entity, legacy_id, col)
);
