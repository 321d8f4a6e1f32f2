-- Why parents (entity :e, ids :ids) are missing from the target: excluded by a rule or quarantined, and where.
SELECT legacy_id, 'excluded by rule ' || rule || ' in lot ' || lot_id
FROM stg.excluded WHERE entity = :e AND legacy_id = ANY(:ids)
UNION ALL
SELECT legacy_id, 'quarantined (' || reason_code || ') in lot ' || lot_id
FROM stg.quarantine WHERE entity = :e AND legacy_id = ANY(:ids)
