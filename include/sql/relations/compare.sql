-- The check of a relation: the live legacy links, mapped, against what the target link table holds.
-- linked: legacy links whose two ends are active target rows; end_missing: the others (an end missing,
-- excluded, quarantined or deleted); lost: a linked pair the target lacks; unexpected: a link the
-- migration wrote that no live legacy link stands for.
SELECT
  (SELECT count(*) FROM pg_temp.relation_ends) AS legacy_links,
  (SELECT count(*) FROM pg_temp.relation_ends WHERE key_id IS NOT NULL AND value_id IS NOT NULL) AS linked,
  (SELECT count(*) FROM pg_temp.relation_ends WHERE key_id IS NULL OR value_id IS NULL) AS end_missing,
  (SELECT count(*) FROM pg_temp.relation_mapped) AS pairs,
  (SELECT count(*) FROM pg_temp.relation_mapped m
    WHERE NOT EXISTS (SELECT 1 FROM $table t WHERE t.$key = m.key_id AND t.$value = m.value_id)) AS lost,
  (SELECT count(*) FROM $table t WHERE t.migrated_lot_id IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM pg_temp.relation_mapped m WHERE m.key_id = t.$key AND m.value_id = t.$value)$in_scope)
    AS unexpected,
  (SELECT array_agg(x) FROM (SELECT m.legacy_key || '-' || m.legacy_value AS x FROM pg_temp.relation_mapped m
     WHERE NOT EXISTS (SELECT 1 FROM $table t WHERE t.$key = m.key_id AND t.$value = m.value_id)
     ORDER BY 1 LIMIT 20) s) AS lost_ids
