-- What became of every legacy row this run extracted, with the hash of the version it saw:
-- quarantined, excluded, merged into a survivor or loaded (first match wins). Rows with none of
-- these are not written: the reconciliation lists them as lost.
WITH r AS (SELECT legacy_id, min(row_hash) AS row_hash FROM stg.raw
           WHERE lot_id = %(lot_id)s AND run_id = %(run_id)s AND entity = %(entity)s AND legacy_id IS NOT NULL
           GROUP BY legacy_id),
     q AS (SELECT DISTINCT ON (legacy_id) legacy_id, stage || ':' || reason_code AS reason FROM stg.quarantine
           WHERE lot_id = %(lot_id)s AND run_id = %(run_id)s AND entity = %(entity)s AND legacy_id IS NOT NULL
           ORDER BY legacy_id, stage, reason_code),
     x AS (SELECT DISTINCT ON (legacy_id) legacy_id, rule FROM stg.excluded
           WHERE lot_id = %(lot_id)s AND run_id = %(run_id)s AND entity = %(entity)s ORDER BY legacy_id, rule),
     m AS (SELECT DISTINCT ON (legacy_id) legacy_id, survivor_legacy_id FROM stg.merge_map
           WHERE lot_id = %(lot_id)s AND run_id = %(run_id)s AND entity = %(entity)s
             AND legacy_id <> survivor_legacy_id ORDER BY legacy_id),
     s AS (SELECT DISTINCT legacy_id FROM $staged WHERE lot_id = %(lot_id)s AND run_id = %(run_id)s)
INSERT INTO crm_migration.legacy_ledger AS g (entity, legacy_id, row_hash, fate, reason, lot_id, run_id)
SELECT %(entity)s, r.legacy_id, r.row_hash,
       CASE WHEN q.legacy_id IS NOT NULL THEN 'quarantined' WHEN x.legacy_id IS NOT NULL THEN 'excluded'
            WHEN m.legacy_id IS NOT NULL THEN 'merged' ELSE 'loaded' END,
       coalesce(q.reason, x.rule, m.survivor_legacy_id), %(lot_id)s, %(run_id)s
FROM r
LEFT JOIN q ON q.legacy_id = r.legacy_id
LEFT JOIN x ON x.legacy_id = r.legacy_id
LEFT JOIN m ON m.legacy_id = r.legacy_id
LEFT JOIN s ON s.legacy_id = r.legacy_id
WHERE coalesce(q.legacy_id, x.legacy_id, m.legacy_id, s.legacy_id) IS NOT NULL
ON CONFLICT (entity, legacy_id) DO UPDATE SET
    row_hash = EXCLUDED.row_hash, fate = EXCLUDED.fate, reason = EXCLUDED.reason, lot_id = EXCLUDED.lot_id,
    run_id = EXCLUDED.run_id
WHERE (g.row_hash, g.fate, g.reason, g.lot_id, g.run_id)
      IS DISTINCT FROM (EXCLUDED.row_hash, EXCLUDED.fate, EXCLUDED.reason, EXCLUDED.lot_id, EXCLUDED.run_id);
