-- Advance the watermark of each scope this run covered to the legacy clock at its extract start
-- minus the safety margin (never backwards, never from a row's own date_modified). Runs in the
-- transaction of the load it covers; the values it replaces are kept first (the first pass of a run
-- wins) so a rollback can put them back.
INSERT INTO crm_migration.watermark_pre_image (lot_id, run_id, entity, scope, modified_at, had_watermark)
SELECT %(lot_id)s, %(run_id)s, %(entity)s, sc.scope, w.modified_at, w.entity IS NOT NULL
FROM unnest(%(scopes)s::text[]) AS sc(scope)
LEFT JOIN crm_migration.watermark w ON w.entity = %(entity)s AND w.scope = sc.scope
ON CONFLICT (lot_id, run_id, entity, scope) DO NOTHING;

INSERT INTO crm_migration.watermark AS w (entity, scope, modified_at, run_id)
SELECT %(entity)s, sc.scope, x.legacy_clock - make_interval(secs => %(margin_seconds)s), %(run_id)s
FROM unnest(%(scopes)s::text[]) AS sc(scope)
JOIN crm_migration.extract_run x ON x.lot_id = %(lot_id)s AND x.run_id = %(run_id)s AND x.entity = %(entity)s
ON CONFLICT (entity, scope) DO UPDATE SET
    modified_at = GREATEST(w.modified_at, EXCLUDED.modified_at), run_id = EXCLUDED.run_id, updated_at = now();
