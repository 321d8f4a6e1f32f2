"""Delta sync for the cutover: what changed in the legacy CRM since the last load.

Per entity, a watermark (crm_migration.watermark) holds the newest legacy ``date_modified``
migrated. A delta run extracts rows modified after (watermark - overlap), runs them through
the same cleanse/transform rules, dedupes *new* rows against the records already migrated,
upserts, applies deletions (soft-deleted rows, and rows gone from the legacy CRM), and advances
the watermark in the same transaction as the load. A row changed while the run is going has a
newer date_modified than anything extracted, so the next run picks it up.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from datetime import datetime, timedelta, UTC

from collections.abc import Callable

import sqlalchemy as sa

from crm_migration.rules.cleanse import CLEAN_COLUMNS, cleanse_rows, defect_entry
from crm_migration.model.config import LotConfig, entity_scopes, load_lots, validate_key
from crm_migration.model.settings import load_migration_config
from crm_migration.stages.data_owner import pending_corrections
from crm_migration.model.db import engine, replace_slice, sql
from crm_migration.matching.dedupe import dedupe_rows
from crm_migration.matching.survivorship import survive
from crm_migration.ops.rollback import CHILDREN
from crm_migration.source.legacy import pg_bucket
from crm_migration.stages.checksums import Presence, keep_id_sums, keep_pending, presence
from crm_migration.model.spec import spec
from crm_migration.model.slices import read_slice, timed
from crm_migration.stages.load import run_load
from crm_migration.stages.run import latest_model, write_dedupe, write_unmatched
from crm_migration.rules.transform import TARGET_TABLE

log = logging.getLogger(__name__)
DELTA_LOT_ID = "delta"


class LeftBehind(RuntimeError):
    """Freeze mode: something was not migrated by the final run."""


def delta_lot(entities: list[str] | None = None) -> LotConfig:
    """One pseudo-lot holding each entity's rules from the lot that owns it."""
    owned = {}
    for lot in load_lots():
        for entity, cfg in lot.entities.items():
            owned.setdefault(entity, cfg)
    chosen = {e: c for e, c in owned.items() if not entities or e in entities}
    if not chosen:
        raise ValueError(f"no lot migrates any of {entities}")
    return LotConfig(lot_id=DELTA_LOT_ID, description="delta sync", entities=chosen, load_chunk_rows=50_000)


def read_watermarks(url: str, entity: str) -> dict[str, datetime]:
    """scope -> watermark of an entity."""
    with engine(url).connect() as conn:
        return dict(conn.execute(sa.text("SELECT scope, modified_at FROM crm_migration.watermark WHERE entity = :e"),
                                 {"e": entity}).all())


def windows(url: str, entity: str, overlap_minutes: float) -> dict[str, tuple[str, datetime]]:
    """scope -> (source_filter, window start) for every loaded scope of the entity: the delta covers
    the union of the lots' scopes, each from its own watermark minus the overlap (never less than the
    configured minimum). A scope whose lot has not loaded yet is left to that lot."""
    overlap = max(float(overlap_minutes), load_migration_config().min_overlap_minutes)
    marks = read_watermarks(url, entity)
    scopes = entity_scopes(entity)
    out = {s: (f, marks[s] - timedelta(minutes=overlap)) for s, f in scopes.items() if s in marks}
    if not out:
        raise ValueError(f"no watermark for {entity}: load its lot (crm_lot_*) before the delta sync")
    for scope in sorted(set(scopes) - set(marks)):
        log.info("delta %s: lot %s has not loaded yet: its rows come with it, not with the delta", entity, scope)
    return out


# --- dedupe new rows against the records already migrated ----------------------------------------

def candidates_sql(entity: str) -> str | None:
    """Migrated records (active target rows) a new row may merge into, shaped like clean rows: found by
    the spec's candidate fields (an exact key, a lower-case name or its first word). None: no look-up."""
    es = spec(entity)
    c = es.candidates
    if c.exact is None and c.name is None:
        return None
    table, cols, joins = TARGET_TABLE[entity], [], []
    for name, f in es.fields.items():
        if f.kind == "reference" and f.entities is not None:
            continue  # polymorphic: not a matching key
        if f.kind == "reference" and f.to:
            joins.append(f"LEFT JOIN crm_migration.crosswalk x_{name} ON x_{name}.entity = '{f.entity}'"
                         f" AND x_{name}.new_id = t.{f.to} AND x_{name}.merged_into IS NULL")
            cols.append(f"x_{name}.legacy_id AS {name}")
        elif f.to:
            cols.append(f"t.{f.to} AS {name}")

    def expr(field: str) -> str:
        f = es.fields[field]
        return f"x_{field}.legacy_id" if f.kind == "reference" else f"t.{f.to}"

    where = []
    if c.exact:
        where.append(f"{expr(c.exact)} = ANY(:keys)")
    if c.name:
        low = f"lower({expr(c.name)})"
        if c.name_part == "first_token":
            low = f"split_part({low}, ' ', 1)"
        where.append(f"{low} = ANY(:names)")
    return (f"SELECT t.legacy_id, {', '.join(cols)} FROM {table} t {' '.join(joins)}"
            f" WHERE t.deleted_at IS NULL AND t.legacy_id <> ALL(:ids) AND ({' OR '.join(where)})")


def _candidate_keys(entity: str, rows: list[dict]) -> tuple[list[str], list[str]]:
    """(exact keys, lower-case name keys) of new rows, by the spec's candidate fields."""
    c = spec(entity).candidates
    keys = sorted({str(r[c.exact]) for r in rows if r.get(c.exact)}) if c.exact else []
    names: set[str] = set()
    if c.name:
        for r in rows:
            v = str(r.get(c.name) or "").lower()
            names.add(v.split(" ")[0] if c.name_part == "first_token" else v)
    return keys, sorted(names - {""})


def _cluster_members(url: str, entity: str) -> tuple[dict[str, set[str]], dict[str, str]]:
    """Merged customers: target id -> every legacy id in it (holder and merged rows), target id -> holder."""
    with engine(url).connect() as conn:
        rows = conn.execute(sa.text(
            f"SELECT m.new_id, m.legacy_id, t.legacy_id FROM crm_migration.merged m"
            f" LEFT JOIN {TARGET_TABLE[entity]} t ON t.id = m.new_id WHERE m.entity = :e"), {"e": entity}).all()
    members: dict[str, set[str]] = defaultdict(set)
    holders: dict[str, str] = {}
    for cid, lid, holder in rows:
        cid = str(cid)
        members[cid].add(lid)
        if holder is not None:
            members[cid].add(holder)
            holders[cid] = holder
    return members, holders


def _likely_matches(entity: str, lot: LotConfig, new_rows: list[dict], candidates: list[dict],
                    model: dict | None = None) -> set[str]:
    """The candidates a new row scores near or above the merge threshold with (the dedupe's own rules, a
    margin below its review threshold): the migrated records worth reading again with it."""
    if not new_rows or not candidates:
        return set()
    rules = lot.entities[entity].dedupe
    floor = max(0.5, (rules.review_threshold if rules.review_threshold is not None else rules.threshold) - 0.05)
    loose = rules.model_copy(update={"threshold": floor, "review_threshold": None,
                                     "match_probability": rules.review_probability})
    fixed = frozenset(c["legacy_id"] for c in candidates)
    res = dedupe_rows(entity, new_rows + candidates, loose, fixed=fixed, model=model)
    joined = {survivor for lid, survivor, _, _ in res.merges if lid not in fixed}
    return joined & fixed


def has_migrated(url: str, entity: str) -> bool:
    """Whether the target holds rows of the entity the migration loaded (a partial lot run then matches
    its rows against them)."""
    with engine(url).connect() as conn:
        return bool(conn.execute(sa.text(f"SELECT EXISTS (SELECT 1 FROM {TARGET_TABLE[entity]}"
                                         " WHERE migrated_lot_id IS NOT NULL)")).scalar())


def replay_shares(url: str, entities: list[str], total: int) -> dict[str, int]:
    """A replay (rehearsals, benchmarks): `total` migrated rows to read again as if they had changed, shared
    among the entities by their migrated rows."""
    with engine(url).connect() as conn:
        sizes = dict(conn.execute(sa.text("SELECT entity, count(*) FROM crm_migration.crosswalk"
                                          " WHERE entity = ANY(:e) GROUP BY 1"), {"e": entities}).all())
    return {e: round(total * sizes.get(e, 0) / max(sum(sizes.values()), 1)) for e in entities}


def replay_ids(url: str, entity: str, n: int) -> set[str]:
    """The entity's share of a replay: n migrated legacy ids, the same on every replay (ordered by a hash)."""
    with engine(url).connect() as conn:
        ids = conn.execute(sa.text("SELECT legacy_id FROM crm_migration.crosswalk WHERE entity = :e"
                                   " ORDER BY md5(legacy_id) LIMIT :n"), {"e": entity, "n": n}).scalars().all()
    log.info("delta %s: replay of %d migrated rows read as if changed", entity, len(ids))
    return set(ids)


def cluster_expansion(url: str, legacy_url: str, lot: LotConfig, entity: str, check_gone: bool
                      ) -> Callable[[list[tuple]], set[str]]:
    """For the delta extract: the legacy ids to read with the changed rows, so the dedupe derives every
    customer they touch again from all its members, on the first run as on a rerun:

    - every member of a merged customer one of whose rows changed, or whose holder is gone from the
      legacy CRM (check_gone);
    - for new rows, the migrated records they may merge into (found by the dedupe's candidate keys) and
      the members of those.
    """
    def expand(read: list[tuple]) -> set[str]:
        from crm_migration.matching.clusters import labels_of

        changed = {lid for lid, _, _ in read if lid is not None}
        members, holders = _cluster_members(url, entity)
        with engine(url).connect() as conn:
            # rows a data owner corrected here since they were last taken: read again with their customer's
            # other members (a corrected duplicate read alone would take the record over from its survivor)
            corrected = pending_corrections(conn, entity)
            labels = labels_of(conn, entity, sorted(changed | corrected))  # the customer each row belongs to
            fresh = [json.loads(data) for lid, _, data in read if lid is not None and lid not in labels]
            clean = cleanse_rows(entity, fresh, lot.entities[entity]).clean if fresh else []
            keys, names = _candidate_keys(entity, clean)
            look_up = candidates_sql(entity)
            found = [dict(m) for m in conn.execute(sa.text(look_up), {
                "ids": sorted(changed), "keys": keys, "names": names}).mappings()] if clean and look_up else []
            candidates = _likely_matches(entity, lot, clean, found, latest_model(conn, entity))
            labels.update(labels_of(conn, entity, sorted(candidates)))
        touched = {labels[lid] for lid in changed | candidates | corrected if lid in labels}
        gone: set[str] = set()
        if check_gone and holders:
            present = presence(url, legacy_url, entity, changed)
            gone = {h for h in holders.values() if h not in present}
            touched |= {cid for cid, h in holders.items() if h in gone}
        extra = (candidates | corrected | set().union(*(members.get(cid, set()) for cid in touched))) - changed - gone
        log.info("delta %s: %d changed rows (%d new) touch %d migrated customers (%d candidates for the new"
                 " rows, %d holders gone), %d rows with corrections to apply: %d more rows to read", entity,
                 len(changed), len(fresh), len(touched), len(candidates),
                 len({c for c in touched if holders.get(c) in gone}), len(corrected - changed), len(extra))
        return extra

    return expand


def run_dedupe_delta(url: str, lot: LotConfig, entity: str, run_id: str) -> dict:
    """Rows already migrated stay with their customer; new rows are matched against them (and against
    migrated records fetched by blocking keys that the extract did not read) and join a customer or
    form new ones. Every customer touched is derived again from all its active members (the extract
    read them) by the survivorship rules, and keeps its target id whichever member survives
    (clusters.py).

    Long because it reads, matches, derives and writes one slice with one set of rows in one timed step; the
    steps with logic of their own are helpers (_candidate_keys, clusters.py)."""
    from crm_migration.matching import clusters as cl

    validate_key(lot.lot_id, run_id)
    cfg = lot.entities[entity]
    cols = CLEAN_COLUMNS[entity]
    with timed(url, lot.lot_id, run_id, entity, "dedupe") as st:
        with engine(url).connect() as conn:
            rows = read_slice(conn, f"stg.{entity}_cleanse", cols, lot.lot_id, run_id)
            ids = [r["legacy_id"] for r in rows]
            labels = cl.labels_of(conn, entity, ids)
            holders = cl.holders_of(conn, entity, set(labels.values()))
            new_rows = [r for r in rows if r["legacy_id"] not in labels]
            keys, names = _candidate_keys(entity, new_rows)
            look_up = candidates_sql(entity)
            candidates = [dict(m) for m in conn.execute(sa.text(look_up),
                                                        {"ids": ids, "keys": keys, "names": names}).mappings()
                          ] if new_rows and look_up else []
            cand_labels = cl.labels_of(conn, entity, [c["legacy_id"] for c in candidates])
            model = latest_model(conn, entity)
        # a migrated row edited into a defect (its surname erased): quarantined as the cleanse did, its
        # record left as it was; a new incomplete row may still merge into a complete one (dedupe_rows)
        broken = [defect_entry(r["legacy_id"], r["defect"]) for r in rows
                  if r["legacy_id"] in labels and r.get("defect")]
        known = [r for r in rows if r["legacy_id"] in labels and not r.get("defect")]
        fixed = frozenset(c["legacy_id"] for c in candidates)
        res = dedupe_rows(entity, new_rows + known + candidates, cfg.dedupe, fixed=fixed,
                          labels={**{r["legacy_id"]: labels[r["legacy_id"]] for r in known}, **cand_labels},
                          model=model)
        all_labels = {**labels, **cand_labels}
        groups: dict[str, list[str]] = defaultdict(list)
        for lid, survivor, _, _ in res.merges:
            groups[survivor].append(lid)
        by_label: dict[str, list[dict]] = defaultdict(list)
        for r in known:
            by_label[labels[r["legacy_id"]]].append(r)
        new_by_id = {r["legacy_id"]: r for r in new_rows}
        survivors, merges, clusters = [], [], []
        fresh_groups: list[str] = []
        for survivor, members in groups.items():
            found = {all_labels[m] for m in members if m in all_labels}
            newcomers = [m for m in members if m in new_by_id]
            if not newcomers:
                continue
            if not found:
                fresh_groups.append(survivor)
            elif (cid := found.pop()) in by_label:  # joins a customer this run derives again
                by_label[cid] += [new_by_id[m] for m in newcomers]
            else:  # joins a migrated record the extract did not read: merged into it as it is
                holder = next(m for m in members if m in cand_labels)
                merges += [(m, holder, 1.0, "joined") for m in newcomers]
                clusters.append(cl.Cluster(holder, newcomers, cid, "joined", holder))
        for cid, members in sorted(by_label.items()):
            survivor = survive(members, cfg.dedupe) if len(members) > 1 else members[0]
            s, holder = survivor["legacy_id"], holders.get(cid)
            if holder not in {m["legacy_id"] for m in members}:
                event = "taken_over"
            elif s != holder:
                event = "flipped"
            else:
                event = "rederived" if len(members) > 1 else "same"
            survivors.append(survivor)
            merges += [(m["legacy_id"], s, 1.0, "self" if m["legacy_id"] == s else "cluster") for m in members]
            clusters.append(cl.Cluster(s, [m["legacy_id"] for m in members], cid, event, holder))
        with engine(url).connect() as conn:
            ids_new = cl.fresh_ids(conn, entity, fresh_groups, set(all_labels.values()))
        new_survivors = {r["legacy_id"]: r for r in res.survivors}
        for s in fresh_groups:
            survivors.append(new_survivors[s])
            merges += [m for m in res.merges if m[1] == s]
            clusters.append(cl.Cluster(s, groups[s], ids_new[s], "new"))
        survivors.sort(key=lambda r: r["legacy_id"])
        with engine(url).begin() as conn:
            write_dedupe(conn, lot.lot_id, run_id, entity, survivors, merges, res.review,
                         sorted(clusters, key=lambda c: c.survivor))
            write_unmatched(conn, lot.lot_id, run_id, entity, sorted(broken + res.quarantined))
        st["rows_in"], st["rows_out"] = len(rows), len(survivors)
    events = cl.counts(clusters)
    merged_into_existing = sum(len(c.members) for c in clusters if c.event == "joined")
    log.info("delta dedupe %s: %d changed rows, %d of migrated customers (%s), %d new, %d candidates fetched,"
             " %d merged into migrated records", entity, len(rows), len(known),
             ", ".join(f"{k} {v}" for k, v in events.items() if v) or "none", len(new_rows), len(candidates),
             merged_into_existing)
    return {"entity": entity, "survivors": len(survivors), "updates": len(known),
            "new": len(new_rows), "merged_into_existing": merged_into_existing, "clusters": events}


# --- deletions and the watermark, inside the load transaction ------------------------------------

def deletions(url: str, legacy_url: str, lot: LotConfig, entity: str, run_id: str,
              detect_hard_deletes: bool) -> tuple[list[tuple[str, str]], Presence | None]:
    """(legacy_id, kind) of migrated records to delete: soft-deleted in this delta, or gone from the legacy CRM
    (read only in the key ranges whose ids changed since the last delta, and those of the ids this run loads:
    stages/checksums); and the legacy ids' presence, whose checksums the load keeps for the next delta."""
    with engine(url).connect() as conn:
        taken_over = {r[0] for r in conn.execute(sa.text(  # another member holds the record now: it stays
            f"SELECT c.previous_holder FROM stg.cluster c JOIN stg.{entity}_transform t ON t.lot_id = c.lot_id"
            " AND t.run_id = c.run_id AND t.id = c.cluster_id WHERE c.lot_id = :l AND c.run_id = :r"
            " AND c.entity = :e AND c.event = 'taken_over' AND c.previous_holder IS NOT NULL"),
            {"l": lot.lot_id, "r": run_id, "e": entity})}
        soft = [r[0] for r in conn.execute(sa.text(
            "SELECT e.legacy_id FROM stg.excluded e JOIN crm_migration.crosswalk x ON x.entity = e.entity"
            " AND x.legacy_id = e.legacy_id AND x.merged_into IS NULL"
            " WHERE e.lot_id = :l AND e.run_id = :r AND e.entity = :e AND e.rule = 'soft_deleted'"),
            {"l": lot.lot_id, "r": run_id, "e": entity}) if r[0] not in taken_over]
        staged = {r[0] for r in conn.execute(sa.text(
            "SELECT legacy_id FROM stg.extract WHERE lot_id = :l AND run_id = :r AND entity = :e"
            " AND legacy_id IS NOT NULL"), {"l": lot.lot_id, "r": run_id, "e": entity})}
    out = [(lid, "soft_deleted") for lid in soft]
    present = None
    if detect_hard_deletes:
        present = presence(url, legacy_url, entity, staged)
        ranges = "" if present.checked is None else f" AND {pg_bucket('legacy_id')} = ANY(:b)"
        with engine(url).connect() as conn:
            migrated = [r[0] for r in conn.execute(sa.text(
                "SELECT legacy_id FROM crm_migration.crosswalk WHERE entity = :e AND merged_into IS NULL" + ranges),
                {"e": entity, "b": sorted(present.checked or ())}) if r[0] not in taken_over]
        out += [(lid, "hard_deleted") for lid in migrated if lid not in present]
    return sorted(set(out)), present


def apply_deletions(conn: sa.Connection, lot: LotConfig, entity: str, run_id: str,
                    rows: list[tuple[str, str]], mode: str) -> int:
    """Soft mode sets deleted_at (from the legacy date_modified when known); hard mode removes the row.
    The pre-image is kept first, so rollback can restore either."""
    table = TARGET_TABLE[entity]
    replace_slice(conn, "crm_migration.deletion", {"lot_id": lot.lot_id, "run_id": run_id, "entity": entity},
                  ("legacy_id", "kind", "mode"), ((lid, kind, mode) for lid, kind in rows))
    ids = [lid for lid, _ in rows]
    if not ids:
        return 0
    conn.execute(sa.text(
        f"INSERT INTO crm_migration.pre_image (lot_id, run_id, entity, legacy_id, action, row_before, target_id)"
        f" SELECT :l, :r, :e, t.legacy_id, 'update', to_jsonb(t), t.id FROM {table} t WHERE t.legacy_id = ANY(:ids)"
        " ON CONFLICT (lot_id, run_id, entity, legacy_id) DO NOTHING"),
        {"l": lot.lot_id, "r": run_id, "e": entity, "ids": ids})
    if mode == "hard":  # the children's references the delete sets NULL are kept too: rollback restores them
        for child, fk in CHILDREN[entity]:
            conn.execute(sql("delta/children_pre_image.sql", child=TARGET_TABLE[child], table=table, fk=fk),
                         {"l": lot.lot_id, "r": run_id, "c": child, "ids": ids})
        return conn.execute(sa.text(f"DELETE FROM {table} WHERE legacy_id = ANY(:ids)"), {"ids": ids}).rowcount
    # the deletion's legacy time is the row's newest version: a later load of an older one cannot undo it
    return conn.execute(sql("delta/soft_delete.sql", table=table),
                        {"l": lot.lot_id, "r": run_id, "e": entity, "ids": ids}).rowcount


def run_delta_load(url: str, legacy_url: str, lot: LotConfig, entity: str, run_id: str, dry_run: bool,
                   delete_mode: str, detect_hard_deletes: bool) -> dict:
    dels, present = deletions(url, legacy_url, lot, entity, run_id, detect_hard_deletes)
    if dry_run:
        log.info("dry run: %s would delete %d records; target and watermark untouched", entity, len(dels))
        return {"entity": entity, "loaded": 0, "would_delete": len(dels), "dry_run": True}

    def delete(conn: sa.Connection) -> dict:
        if present is not None:  # with the rows and the watermark: the next delta compares with these
            keep_id_sums(conn, entity, present.sums)
        keep_pending(conn, entity, f"{lot.lot_id}/{run_id}")
        return {"deleted": apply_deletions(conn, lot, entity, run_id, dels, delete_mode)}

    out = run_load(url, lot, entity, run_id, single_transaction=True, advance_watermark=True, before_finish=delete)
    out["watermark_advanced_at"] = datetime.now(UTC).isoformat()
    return out


def freeze_verdict(detail: dict[str, dict], first: int = 3) -> dict:
    """GO or NO-GO from each entity's freeze comparison: the causes counted per entity, the first ids of
    each (opaque ids in clear), the waivers relied on, and one line that says it all."""
    causes = {e: {k: d["counts"][k] for k in d["failure_kinds"] if d["counts"].get(k)} for e, d in detail.items()}
    causes = {e: c for e, c in causes.items() if c}
    first_ids = {e: {k: detail[e]["failures"].get(k, [])[:first] for k in c} for e, c in causes.items()}
    if causes:
        parts = [f"{e}: " + ", ".join(f"{n} {k} (first: {', '.join(map(str, first_ids[e][k])) or '-'})"
                                       for k, n in c.items()) for e, c in causes.items()]
        headline = "NO-GO -- " + "; ".join(parts)
    else:
        waived = sum(d["counts"].get("waived", 0) for d in detail.values())
        headline = ("GO -- every legacy row of every scope is loaded, merged, excluded or waived"
                    f" ({waived} waived), and the target holds what they produce: no row stale, drifted or unlinked,"
                    " every live link kept")
    return {"verdict": "NO-GO" if causes else "GO", "headline": headline, "causes": causes, "first_ids": first_ids,
            "waivers": {e: d["waivers"] for e, d in detail.items() if d.get("waivers")}, "entities": detail}


def freeze_check(url: str, legacy_url: str, run_id: str, entities: list[str] | None = None) -> dict:
    """Final run: every legacy row of every lot's scope of the entities (default all) is compared with
    the target by key and hash, and every target row by content and links (crm_migration.content). GO when
    every row is loaded, merged into a loaded survivor, excluded or waived (data_owner) and nothing is
    stale, drifted or unlinked; NO-GO otherwise, failing the run with the counts per cause and the first ids."""
    from crm_migration.checks.reconcile import freeze_compare
    from crm_migration.reports.report import store_report
    from crm_migration.stages import relations

    lot = delta_lot(entities)
    detail = {}
    for entity in lot.entities:
        rec = freeze_compare(url, legacy_url, lot, entity)
        detail[entity] = {**rec.as_dict(), "failure_kinds": list(rec.failure_kinds)}
        if not rec.ok:
            log.error("%s", rec.summary())
        per, failing, first = relations.freeze_findings(url, legacy_url, entity)
        if per:  # the link tables the entity declares: every live legacy link in the target, nothing else
            detail[entity]["relations"] = per
            detail[entity]["counts"].update(failing)
            detail[entity]["failures"].update(first)
            detail[entity]["failure_kinds"] += list(failing)
    verdict = freeze_verdict(detail)
    store_report(url, "freeze", run_id, False, verdict["verdict"] == "GO", verdict)
    log.info("freeze: %s", verdict["headline"])
    if verdict["verdict"] != "GO":
        raise LeftBehind(f"freeze {verdict['headline']}")
    return {"verdict": "GO", **{e: d["counts"] for e, d in detail.items()}}
