-- Legacy rows this run excluded or quarantined, with the hash of the version it saw (loaded and
-- merged rows carry theirs in the target row and crm_migration.merged). Rows this run loaded or
-- merged leave the ledger. The reconciliation and the freeze read it; so does a hash-compare delta.
DELETE FROM crm_migration.legacy_ledger g
USING (SELECT legacy_id FROM $staged WHERE lot_id = %(lot_id)s AND run_id = %(run_id)s
       UNION SELECT legacy_id FROM stg.merge_map WHERE lot_id = %(lot_id)s AND run_id = %(run_id)s
                                                   AND entity = %(entity)s) done
WHERE g.entity = %(entity)s AND g.legacy_id = done.legacy_id;

WITH f AS (SELECT DISTINCT ON (legacy_id) legacy_id, fate, reason FROM (
             SELECT legacy_id, 'quarantined' AS fate, stage || ':' || reason_code AS reason, 1 AS p
             FROM stg.quarantine
             WHERE lot_id = %(lot_id)s AND run_id = %(run_id)s AND entity = %(entity)s AND legacy_id IS NOT NULL
             UNION ALL
             SELECT legacy_id, 'excluded', rule, 2 FROM stg.excluded
             WHERE lot_id = %(lot_id)s AND run_id = %(run_id)s AND entity = %(entity)s) a
           ORDER BY legacy_id, p, reason),
     r AS (SELECT legacy_id, min(row_hash) AS row_hash FROM stg.extract
           WHERE lot_id = %(lot_id)s AND run_id = %(run_id)s AND entity = %(entity)s
             AND legacy_id IN (SELECT legacy_id FROM f)
           GROUP BY legacy_id)
INSERT INTO crm_migration.legacy_ledger AS g (entity, legacy_id, row_hash, fate, reason, lot_id, run_id)
SELECT %(entity)s, f.legacy_id, r.row_hash, f.fate, f.reason, %(lot_id)s, %(run_id)s
FROM f JOIN r ON r.legacy_id = f.legacy_id
ON CONFLICT (entity, legacy_id) DO UPDATE SET
    row_hash = EXCLUDED.row_hash, fate = EXCLUDED.fate, reason = EXCLUDED.reason, lot_id = EXCLUDED.lot_id,
    run_id = EXCLUDED.run_id
WHERE (g.row_hash, g.fate, g.reason, g.lot_id, g.run_id)
      IS DISTINCT FROM (EXCLUDED.row_hash, EXCLUDED.fate, EXCLUDED.reason, EXCLUDED.lot_id, EXCLUDED.run_id);
