-- Pre-image of the target rows this chunk is about to insert although the crosswalk knows them as merged
-- (a merged row that became a survivor): 'insert', so rollback removes the row and restores the merged
-- entry. Rows new to the migration need none: rollback finds them by migrated_first_run_id. Rows the
-- upsert changes get theirs from write_chunk.sql, in the same statement as the change.
INSERT INTO crm_migration.pre_image (lot_id, run_id, entity, legacy_id, action, row_before, target_id)
SELECT %(lot_id)s, %(run_id)s, %(entity)s, s.legacy_id, 'insert', NULL, s.id
FROM $chunk s
CROSS JOIN LATERAL (SELECT 1 FROM crm_migration.merged m0
                    WHERE m0.entity = %(entity)s AND m0.legacy_id = s.legacy_id LIMIT 1) m
WHERE NOT EXISTS (SELECT 1 FROM $target t WHERE t.id = s.id)
ON CONFLICT (lot_id, run_id, entity, legacy_id) DO NOTHING;
