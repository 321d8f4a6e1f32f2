-- The crosswalk of loaded rows is the target table itself. A row of this chunk that the crosswalk
-- knew as merged is a survivor now: its merged entry goes, after a pre-image for rollback.
INSERT INTO crm_migration.crosswalk_pre_image (lot_id, run_id, entity, legacy_id, new_id, merged_into, last_run_id,
                                               orig_lot_id, orig_first_run_id)
SELECT %(lot_id)s, %(run_id)s, m.entity, m.legacy_id, m.new_id, m.merged_into, m.last_run_id, m.lot_id,
       m.first_run_id
FROM $chunk s
CROSS JOIN LATERAL (SELECT * FROM crm_migration.merged m0
                    WHERE m0.entity = %(entity)s AND m0.legacy_id = s.legacy_id LIMIT 1) m
ON CONFLICT (lot_id, run_id, entity, legacy_id) DO NOTHING;

DELETE FROM crm_migration.merged m USING $chunk s
WHERE m.entity = %(entity)s AND m.legacy_id = s.legacy_id;
