-- Target rows of this chunk changed outside the migration since it last wrote them (their content differs
-- from crm_migration.written): the columns edited, those the entity's edit policy keeps at the new CRM's
-- value (%(keepable)s: flag and target_wins), and for `flag` the migration's earlier values of those columns.
-- The first pass of a run wins: a rerun finds the same decisions (the edits it kept are still there).
INSERT INTO crm_migration.edit_conflict (lot_id, run_id, entity, id, legacy_id, edited, kept, policy, flagged)
SELECT %(lot_id)s, %(run_id)s, %(entity)s, d.id, d.legacy_id, d.edited,
       ARRAY(SELECT c FROM unnest(d.edited) c WHERE c = ANY(%(keepable)s)), %(policy)s,
       (SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(d.was) e
        WHERE e.key = ANY(d.edited) AND e.key = ANY(%(flagged)s))
FROM (SELECT s.id, t.legacy_id, w.content AS was,
             ARRAY(SELECT e.key FROM jsonb_each(w.content) e WHERE e.value IS DISTINCT FROM c.now -> e.key
                   ORDER BY e.key) AS edited
      FROM $staged s
      JOIN $target t ON t.id = s.id
      JOIN crm_migration.written w ON w.entity = %(entity)s AND w.id = s.id
      CROSS JOIN LATERAL (SELECT $content AS now) c
      WHERE s.lot_id = %(lot_id)s AND s.run_id = %(run_id)s AND s.legacy_id > %(low)s AND s.legacy_id <= %(high)s
        AND w.content IS DISTINCT FROM c.now) d
WHERE cardinality(d.edited) > 0
ON CONFLICT (lot_id, run_id, entity, id) DO NOTHING
