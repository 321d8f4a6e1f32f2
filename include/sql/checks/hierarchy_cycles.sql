-- The rows to cut in a hierarchy's cycles: on the graph of where each row's reference should point
-- ($wanted: id, legacy_id, want), walked from the rows this run staged ($staged) and the rows cut before,
-- each cycle reached gives its member with the smallest legacy id.
WITH RECURSIVE g AS MATERIALIZED (SELECT id, legacy_id, want FROM ($wanted) l WHERE want IS NOT NULL),
-- (a join, not "IN (...) OR IN (...)": with a large slice's statistics that became a subquery scanned again
-- for every row, 104 s at 756k rows instead of 3 s)
starts AS (SELECT g.id FROM g JOIN (SELECT legacy_id FROM $staged WHERE lot_id = :l AND run_id = :r
                                   UNION SELECT legacy_id FROM crm_migration.link_cut WHERE entity = :e AND col = :c) s
             ON s.legacy_id = g.legacy_id),
walk (start, node, depth) AS (
    SELECT g.id, g.want, 1 FROM g JOIN starts s ON s.id = g.id
    UNION ALL
    SELECT w.start, g.want, w.depth + 1 FROM walk w JOIN g ON g.id = w.node
    WHERE w.node <> w.start AND w.depth < 1000)
    CYCLE node SET looped USING visited,  -- a walk into a cycle that does not hold its start stops there
cyclic AS (SELECT DISTINCT start FROM walk WHERE node = start)
SELECT DISTINCT min(g.legacy_id) OVER (PARTITION BY w.start)
FROM walk w JOIN cyclic USING (start) JOIN g ON g.id = w.node
