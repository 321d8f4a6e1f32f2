-- Rows merged into a survivor point at the survivor's new id, whether the survivor was
-- loaded by this run or earlier (the delta sync merges new rows into migrated records).
-- A merged entry this changes keeps its pre-image for rollback. The hash of the merged legacy
-- version is kept for the freeze comparison.
INSERT INTO crm_migration.crosswalk_pre_image (lot_id, run_id, entity, legacy_id, new_id, merged_into, last_run_id,
                                               orig_lot_id, orig_first_run_id)
SELECT %(lot_id)s, %(run_id)s, x.entity, x.legacy_id, x.new_id, x.merged_into, x.last_run_id, x.lot_id,
       x.first_run_id
FROM stg.merge_map m
JOIN $target s ON s.legacy_id = m.survivor_legacy_id
JOIN crm_migration.merged x ON x.entity = m.entity AND x.legacy_id = m.legacy_id
WHERE m.lot_id = %(lot_id)s AND m.run_id = %(run_id)s AND m.entity = %(entity)s
  AND m.legacy_id <> m.survivor_legacy_id
  AND (x.new_id, x.merged_into) IS DISTINCT FROM (s.id, m.survivor_legacy_id)
ON CONFLICT (lot_id, run_id, entity, legacy_id) DO NOTHING;

INSERT INTO crm_migration.merged AS x (entity, legacy_id, new_id, merged_into, lot_id, first_run_id, last_run_id,
                                       row_hash)
SELECT m.entity, m.legacy_id, s.id, m.survivor_legacy_id, %(lot_id)s, %(run_id)s, %(run_id)s, r.row_hash
FROM stg.merge_map m
JOIN $target s ON s.legacy_id = m.survivor_legacy_id
LEFT JOIN LATERAL (SELECT r0.row_hash FROM stg.extract r0
                   WHERE r0.lot_id = %(lot_id)s AND r0.run_id = %(run_id)s AND r0.entity = %(entity)s
                     AND r0.legacy_id = m.legacy_id LIMIT 1) r ON true
WHERE m.lot_id = %(lot_id)s AND m.run_id = %(run_id)s AND m.entity = %(entity)s
  AND m.legacy_id <> m.survivor_legacy_id
ON CONFLICT (entity, legacy_id) DO UPDATE SET
    new_id = EXCLUDED.new_id, merged_into = EXCLUDED.merged_into, last_run_id = EXCLUDED.last_run_id,
    row_hash = EXCLUDED.row_hash
WHERE (x.new_id, x.merged_into, x.last_run_id, x.row_hash)
      IS DISTINCT FROM (EXCLUDED.new_id, EXCLUDED.merged_into, EXCLUDED.last_run_id, EXCLUDED.row_hash);

-- A record taken over by another member (its holder deleted, excluded or quarantined, or gone): the
-- old holder stays in the crosswalk, pointing at the record (children referencing it keep their
-- parent), with no hash: it is accounted for by its own fate (excluded, quarantined), not as merged.
INSERT INTO crm_migration.merged AS x (entity, legacy_id, new_id, merged_into, lot_id, first_run_id, last_run_id,
                                       row_hash)
SELECT c.entity, c.previous_holder, s.id, c.survivor_legacy_id, %(lot_id)s, %(run_id)s, %(run_id)s, NULL
FROM stg.cluster c
JOIN $target s ON s.id = c.cluster_id AND s.legacy_id = c.survivor_legacy_id
WHERE c.lot_id = %(lot_id)s AND c.run_id = %(run_id)s AND c.entity = %(entity)s AND c.event = 'taken_over'
  AND c.previous_holder IS NOT NULL
ON CONFLICT (entity, legacy_id) DO UPDATE SET
    new_id = EXCLUDED.new_id, merged_into = EXCLUDED.merged_into, last_run_id = EXCLUDED.last_run_id,
    row_hash = NULL
WHERE (x.new_id, x.merged_into, x.row_hash) IS DISTINCT FROM (EXCLUDED.new_id, EXCLUDED.merged_into, NULL);
