-- Target rows of this chunk changed outside the migration since it last wrote them (their content differs
-- from crm_migration.written): the columns edited, those the entity's edit policy keeps at the new CRM's
-- value (%(keepable)s: flag and target_wins), and for `flag` the migration's earlier values of those columns.
-- The first pass of a run wins: a rerun finds the same decisions (the edits it kept are still there).
-- Only rows the load would change are looked at (a staged content column differs from the
-- target's): building the content of rows the load leaves alone cost a rerun half its time. The record
-- and target row are looked up LATERAL ... LIMIT 1 (hash joins read every row of the entity per chunk).
INSERT INTO crm_migration.edit_conflict (lot_id, run_id, entity, id, legacy_id, edited, kept, policy, flagged)
SELECT %(lot_id)s, %(run_id)s, %(entity)s, d.id, d.legacy_id, d.edited,
       ARRAY(SELECT c FROM unnest(d.edited) c WHERE c = ANY(%(keepable)s)), %(policy)s,
       (SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(d.was) e
        WHERE e.key = ANY(d.edited) AND e.key = ANY(%(flagged)s))
FROM (SELECT s.id, t.legacy_id, w.content AS was,
             ARRAY(SELECT e.key FROM jsonb_each(w.content) e WHERE e.value IS DISTINCT FROM c.now -> e.key
                   ORDER BY e.key) AS edited
      FROM $staged s
      CROSS JOIN LATERAL (SELECT t0.* FROM $target t0 WHERE t0.id = s.id LIMIT 1) t
      CROSS JOIN LATERAL (SELECT w0.content FROM crm_migration.written w0 WHERE w0.entity = %(entity)s
                          AND w0.id = s.id LIMIT 1) w
      CROSS JOIN LATERAL (SELECT $content AS now) c
      WHERE s.lot_id = %(lot_id)s AND s.run_id = %(run_id)s AND s.legacy_id > %(low)s AND s.legacy_id <= %(high)s
        AND $differs
        AND w.content IS DISTINCT FROM c.now) d
WHERE cardinality(d.edited) > 0
ON CONFLICT (lot_id, run_id, entity, id) DO NOTHING
