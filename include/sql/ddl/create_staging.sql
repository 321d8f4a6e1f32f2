-- Stage data, keyed by (lot_id, run_id): every task deletes and rewrites its
-- own slice only, so clearing and rerunning a task is safe.
CREATE SCHEMA IF NOT EXISTS stg;
-- tables named after the stage that writes them (older releases' names: model/ddl.renamed_staging_sql)
CREATE TABLE IF NOT EXISTS stg.extract (
    lot_id    text NOT NULL,
    run_id    text NOT NULL,
    entity    text NOT NULL,
    legacy_id text,
    row_hash  text NOT NULL,
    data      jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_extract_slice_id ON stg.extract (lot_id, run_id, entity, legacy_id);
CREATE TABLE IF NOT EXISTS stg.quarantine (
    lot_id      text NOT NULL,
    run_id      text NOT NULL,
    entity      text NOT NULL,
    legacy_id   text,
    stage       text NOT NULL,
    reason_code text NOT NULL,
    detail      text,
    raw_row     jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_quarantine_slice ON stg.quarantine (lot_id, run_id, entity, stage);
CREATE TABLE IF NOT EXISTS stg.excluded (
    lot_id    text NOT NULL,
    run_id    text NOT NULL,
    entity    text NOT NULL,
    legacy_id text NOT NULL,
    rule      text NOT NULL,
    raw_row   jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_excluded_slice ON stg.excluded (lot_id, run_id, entity);
CREATE TABLE IF NOT EXISTS stg.merge_map (
    lot_id             text NOT NULL,
    run_id             text NOT NULL,
    entity             text NOT NULL,
    legacy_id          text NOT NULL,
    survivor_legacy_id text NOT NULL,
    score              double precision NOT NULL,
    rule               text NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_merge_map_slice ON stg.merge_map (lot_id, run_id, entity);
-- One row per cluster the dedupe staged or merged into: the target id it keeps (the id follows the
-- cluster, not its survivor row) and what became of it: new, same, flipped (another member survives),
-- taken_over (the row that held the target record was deleted or dropped out: the next member holds
-- it now), rederived (a delta re-derived its values from every member), split (part of a cluster
-- that another part keeps the id of: a new id), joined (merged into a migrated record outside the run).
CREATE TABLE IF NOT EXISTS stg.cluster (
    lot_id             text NOT NULL,
    run_id             text NOT NULL,
    entity             text NOT NULL,
    cluster_id         uuid NOT NULL,
    survivor_legacy_id text NOT NULL,
    event              text NOT NULL,
    previous_holder    text,           -- legacy id that held the target record before this run
    members            integer NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_cluster_slice ON stg.cluster (lot_id, run_id, entity);
-- Pairs in the dedupe grey zone: not merged, kept for a person to review.
CREATE TABLE IF NOT EXISTS stg.review_pair (
    lot_id      text NOT NULL,
    run_id      text NOT NULL,
    entity      text NOT NULL,
    legacy_id_a text NOT NULL,
    legacy_id_b text NOT NULL,
    score       double precision NOT NULL,
    agreeing    text NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_review_pair_slice ON stg.review_pair (lot_id, run_id, entity);
-- Per-entity tables (stg.<entity>_cleanse, _dedupe, _transform) are generated from config/entities:
-- ddl.staging_sql().

-- The partitioned dedupe of a lot (crm_migration.matching.partitioned): dedupe_prepare_<entity> writes the plan
-- (partitions, the learned model, the lowest cut) and each clean row's compared values, blocking keys,
-- each key's partition and term frequencies; each mapped dedupe_score_<entity> task writes its
-- partition's weight histogram and the pairs above the cut; dedupe_<entity> clusters them.
CREATE TABLE IF NOT EXISTS stg.dedupe_plan (
    lot_id     text NOT NULL,
    run_id     text NOT NULL,
    entity     text NOT NULL,
    partitions integer NOT NULL,
    n_rows     bigint NOT NULL,
    ids_digest text NOT NULL,
    cut        double precision NOT NULL,
    model      jsonb,
    tf_columns text[] NOT NULL,
    PRIMARY KEY (lot_id, run_id, entity)
);
CREATE TABLE IF NOT EXISTS stg.dedupe_input (
    lot_id    text NOT NULL,
    run_id    text NOT NULL,
    entity    text NOT NULL,
    uid       bigint NOT NULL,
    legacy_id text NOT NULL,
    vals      text[] NOT NULL,
    keys      text[] NOT NULL,
    parts     integer[] NOT NULL,
    tfs       double precision[] NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_dedupe_input_slice ON stg.dedupe_input (lot_id, run_id, entity);
CREATE TABLE IF NOT EXISTS stg.dedupe_score (
    lot_id   text NOT NULL,
    run_id   text NOT NULL,
    entity   text NOT NULL,
    part     integer NOT NULL,
    rows_in  bigint NOT NULL,
    compared bigint NOT NULL,
    hist     jsonb NOT NULL,
    seconds  double precision NOT NULL,
    cut      double precision  -- the total weight its kept pairs are at or above (linkage.partition_cut)
);
ALTER TABLE stg.dedupe_score ADD COLUMN IF NOT EXISTS cut double precision;
CREATE TABLE IF NOT EXISTS stg.dedupe_pair (
    lot_id  text NOT NULL,
    run_id  text NOT NULL,
    entity  text NOT NULL,
    part    integer NOT NULL,
    uid_l   bigint NOT NULL,
    uid_r   bigint NOT NULL,
    total   double precision NOT NULL,
    weights double precision[] NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_dedupe_pair_slice ON stg.dedupe_pair (lot_id, run_id, entity);
