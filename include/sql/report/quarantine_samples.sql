-- The first :k quarantined rows of each (stage, reason) of a run's entity, for the report.
SELECT stage, reason_code, legacy_id, detail, raw_row
FROM (SELECT q.*, row_number() OVER (PARTITION BY stage, reason_code ORDER BY legacy_id) AS n
      FROM stg.quarantine q WHERE lot_id = :l AND run_id = :r AND entity = :e) s
WHERE n <= :k
ORDER BY stage, reason_code, legacy_id
