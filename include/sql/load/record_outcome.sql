-- A load's outcome: rows not applied because the target held a newer version, and the children it relinked
-- (merged with an earlier attempt's: a rerun finds none left to relink).
INSERT INTO crm_migration.load_outcome (lot_id, run_id, entity, rejected_older, relinked)
VALUES (:l, :r, :e, :n, CAST(:k AS jsonb))
ON CONFLICT (lot_id, run_id, entity) DO UPDATE
SET rejected_older = EXCLUDED.rejected_older,
    relinked = coalesce(load_outcome.relinked, '{}'::jsonb) || EXCLUDED.relinked
