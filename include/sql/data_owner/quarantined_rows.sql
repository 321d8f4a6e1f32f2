-- A run's quarantined rows, for the data owners' files; :e and :q (stage:CODE) narrow it when not NULL.
SELECT entity, stage, reason_code, legacy_id, detail, raw_row
FROM stg.quarantine
WHERE lot_id = :l AND run_id = :r
  AND (CAST(:e AS text) IS NULL OR entity = :e)
  AND (CAST(:q AS text) IS NULL OR stage || ':' || reason_code = :q)
ORDER BY entity, stage, reason_code, legacy_id
