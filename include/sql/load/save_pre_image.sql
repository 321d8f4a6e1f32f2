-- Pre-images of the target rows this chunk of staged rows is about to change, for rollback.
-- 'update': the row exists in the target, its whole value is kept. 'insert': the row is absent from
-- the target although the crosswalk knows it (it was merged or deleted before). Rows new to the
-- crosswalk need none: rollback finds them by crosswalk.first_run_id. The first pass of a run wins,
-- so a rerun of the same run cannot overwrite what rollback needs.
INSERT INTO crm_migration.pre_image (lot_id, run_id, entity, legacy_id, action, row_before)
SELECT %(lot_id)s, %(run_id)s, %(entity)s, t.legacy_id, 'update', to_jsonb(t)
FROM $chunk s JOIN $target t ON t.legacy_id = s.legacy_id
WHERE NOT EXISTS (SELECT 1 FROM crm_migration.crosswalk x WHERE x.entity = %(entity)s
                  AND x.legacy_id = s.legacy_id AND x.lot_id = %(lot_id)s AND x.first_run_id = %(run_id)s)
ON CONFLICT (lot_id, run_id, entity, legacy_id) DO NOTHING;

INSERT INTO crm_migration.pre_image (lot_id, run_id, entity, legacy_id, action, row_before)
SELECT %(lot_id)s, %(run_id)s, %(entity)s, s.legacy_id, 'insert', NULL
FROM $chunk s JOIN crm_migration.crosswalk x ON x.entity = %(entity)s AND x.legacy_id = s.legacy_id
WHERE NOT EXISTS (SELECT 1 FROM $target t WHERE t.legacy_id = s.legacy_id)
  AND NOT (x.lot_id = %(lot_id)s AND x.first_run_id = %(run_id)s)
ON CONFLICT (lot_id, run_id, entity, legacy_id) DO NOTHING;
