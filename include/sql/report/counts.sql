-- A run's counts for the report, per entity ($e): what it read, loaded, merged, excluded, quarantined,
-- cleansed, deduplicated, and what the load and the transform recorded. crm_migration.reports.report.
SELECT
  (SELECT count(*) FROM stg.extract        WHERE lot_id = :l AND run_id = :r AND entity = :e) AS source,
  (SELECT count(*) FROM stg.${e}_transform WHERE lot_id = :l AND run_id = :r)                 AS loaded,
  (SELECT count(*) FROM stg.merge_map m WHERE lot_id = :l AND run_id = :r AND entity = :e
                                         AND legacy_id <> survivor_legacy_id
                                         AND NOT EXISTS (SELECT 1 FROM stg.quarantine q WHERE q.lot_id = :l
                                           AND q.run_id = :r AND q.entity = :e AND q.legacy_id = m.legacy_id)
                                        )                                                 AS merged,
  (SELECT count(*) FROM stg.excluded   WHERE lot_id = :l AND run_id = :r AND entity = :e) AS excluded,
  (SELECT count(*) FROM stg.quarantine WHERE lot_id = :l AND run_id = :r AND entity = :e) AS quarantined,
  (SELECT count(*) FROM stg.${e}_cleanse  WHERE lot_id = :l AND run_id = :r)                 AS cleansed,
  (SELECT count(*) FROM stg.${e}_dedupe  WHERE lot_id = :l AND run_id = :r)                 AS deduplicated,
  (SELECT count(*) FROM stg.review_pair WHERE lot_id = :l AND run_id = :r AND entity = :e) AS review_pairs,
  (SELECT count(*) FROM crm_migration.correction_applied WHERE lot_id = :l AND run_id = :r AND entity = :e)
                                                                                          AS corrections,
  (SELECT clock_skewed FROM crm_migration.extract_run WHERE lot_id = :l AND run_id = :r AND entity = :e)
                                                                                          AS clock_skewed,
  (SELECT rejected_older FROM crm_migration.load_outcome WHERE lot_id = :l AND run_id = :r AND entity = :e)
                                                                                          AS rejected_older,
  (SELECT relinked FROM crm_migration.load_outcome WHERE lot_id = :l AND run_id = :r AND entity = :e) AS relinked,
  (SELECT jsonb_object_agg(how, n) FROM (
     SELECT policy || CASE WHEN cardinality(kept) > 0 THEN ': new CRM values kept' ELSE ': overwritten' END AS how,
            count(*) AS n FROM crm_migration.edit_conflict WHERE lot_id = :l AND run_id = :r AND entity = :e
     GROUP BY 1) k)                                                                       AS edited_in_target,
  (SELECT defaulted FROM crm_migration.transform_outcome WHERE lot_id = :l AND run_id = :r AND entity = :e)
                                                                                          AS defaulted_references,
  EXISTS (SELECT 1 FROM crm_migration.extract_run WHERE lot_id = :l AND run_id = :r AND entity = :e) AS extracted
