"""Matching quality without labels: our dedupe (weighted and probabilistic) next to Splink at its
defaults, side by side in one run, on FEBRL 1-4 (persons), Fodors-Zagat (restaurants) and generated
people (bench/people_data.py: 1,000 and 20,000 contacts with typos, swapped and missing names, bad e-mails,
birth-date slips and namesakes).

    python bench/bench_matching.py [--sets febrl1,fodors_zagat,people20k] [--no-splink]

The people sets go through the shipped contacts lot as the DAG runs it: its cleanse (a row it quarantines
is a missed pair) then its dedupe rules (config/lots/02_contacts.yaml, the person preset), so they measure
what a user gets, not rules written for the benchmark.

No label is used to fit anything: the rules below are the same for the four FEBRL sets (fields and
blocking keys only; the probabilistic method learns its weights from each set's own rows, and merges
at the default match probability 0.9). Printed per set and method: precision, recall and F1 of the
pairs inside the predicted clusters, the pairs compared, the blocking recall (share of true pairs
that share at least one blocking key: an upper bound of recall) and the seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from itertools import combinations
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import matching_data  # noqa: E402

from crm_migration.model.config import DedupeRules  # noqa: E402
from crm_migration.matching.dedupe import block_keys, dedupe_rows  # noqa: E402
from crm_migration.model.config import load_lots  # noqa: E402
from crm_migration.rules.cleanse import cleanse_rows  # noqa: E402

PERSON_FIELDS = [
    {"field": "given_name", "weight": 2},
    {"field": "surname", "weight": 2},
    {"field": "street_number", "compare": "exact", "weight": 1},
    {"field": "address_1", "weight": 1.5},
    {"field": "address_2", "weight": 0.5},
    {"field": "suburb", "weight": 1},
    {"field": "postcode", "compare": "levenshtein", "weight": 1},
    {"field": "state", "compare": "exact", "weight": 0.5},
    {"field": "date_of_birth", "compare": "damerau_levenshtein", "transform": "digits", "weight": 2},
    {"field": "soc_sec_id", "compare": "damerau_levenshtein", "transform": "digits", "weight": 2.5},
]
PERSON_BLOCKING = [
    ["surname:soundex", "given_name:initial"],
    ["given_name:soundex", "surname:initial"],
    ["soc_sec_id:raw"],
    ["date_of_birth:raw"],
    ["postcode:raw", "street_number:raw"],
    ["surname:soundex", "postcode:raw"],
]
PLACE_FIELDS = [
    {"field": "name", "compare": "tokens", "transform": "company", "weight": 4, "must_agree": True},
    {"field": "street", "compare": "address", "weight": 2},
    {"field": "city", "weight": 1},
    {"field": "phone", "compare": "exact", "transform": "digits", "weight": 2},
    {"field": "category", "compare": "exact", "weight": 0.5},
]
PLACE_BLOCKING = [["name:first_token_metaphone"], ["phone:digits"], ["street:first_token", "city:fold"]]


def rules(kind: str, method: str) -> DedupeRules:
    fields, blocking = (PERSON_FIELDS, PERSON_BLOCKING) if kind == "person" else (PLACE_FIELDS, PLACE_BLOCKING)
    weighted = {"threshold": 0.65, "review_threshold": 0.55} if kind == "person" else {"threshold": 0.75}
    return DedupeRules.model_validate({"method": method, "max_cluster_size": 20, "fields": fields,
                                       "blocking": blocking, **weighted})


def blocking_recall(rows: list[dict], truth: set | None, blocking, raw: list[dict] | None = None) -> float:
    """Share of the true pairs whose two rows share a blocking key (a row the cleanse quarantined shares
    none). truth None: raw's rows carry it (the people sets, via _TRUTH)."""
    truth = _TRUTH[0] if truth is None else truth
    keys = block_keys(rows, blocking)
    at = {r["legacy_id"]: k for r, k in zip(rows, keys, strict=True)}
    hit = sum(a in at and b in at and any(x is not None and x == y for x, y in zip(at[a], at[b], strict=True))
              for a, b in truth)
    return hit / len(truth)


_TRUTH: list[set] = [set()]


def _timed_pairs(rows: list[dict], r: DedupeRules) -> tuple[set, dict]:
    """The pairs inside the clusters dedupe_rows makes of rows under rules r, with its seconds and pairs compared."""
    t = time.perf_counter()
    res = dedupe_rows("bench", rows, r)
    seconds = time.perf_counter() - t
    clusters: dict[str, list[str]] = {}
    for lid, survivor, _, _ in res.merges:
        clusters.setdefault(survivor, []).append(lid)
    predicted = {tuple(sorted(p)) for members in clusters.values() for p in combinations(members, 2)}
    return predicted, {"seconds": seconds, "compared": res.pairs_compared}


def ours(rows: list[dict], kind: str, method: str) -> tuple[set, dict]:
    return _timed_pairs(rows, rules(kind, method))


def preset(rows: list[dict], name: str) -> tuple[set, dict]:
    """A shipped matching preset (config/matching_presets.yaml) as it is, probabilistic: what a lot naming it
    gets on these rows."""
    r = DedupeRules.model_validate({"preset": name, "method": "probabilistic"})
    predicted, info = _timed_pairs(rows, r)
    return predicted, {**info, "blocking": blocking_recall(rows, None, r.blocking)}


def contacts_lot():  # noqa: ANN201
    return {lot.lot_id: lot for lot in load_lots()}["contacts"].entities["contacts"]


def shipped(rows: list[dict], method: str) -> tuple[set, dict]:
    """The contacts lot as shipped: cleanse (quarantined rows merge with nothing), then its dedupe rules
    (method: the lot's own, or weighted as for a lot under 200 rows)."""
    cfg = contacts_lot()
    t = time.perf_counter()
    res_clean = cleanse_rows("contacts", rows, cfg)
    res = dedupe_rows("contacts", res_clean.clean, cfg.dedupe.model_copy(update={"method": method}))
    seconds = time.perf_counter() - t
    clusters: dict[str, list[str]] = {}
    for lid, survivor, _, _ in res.merges:
        clusters.setdefault(survivor, []).append(lid)
    predicted = {tuple(sorted(p)) for members in clusters.values() for p in combinations(members, 2)}
    quarantined = len(res_clean.quarantined) + len(getattr(res, "quarantined", ()))
    return predicted, {"seconds": seconds, "compared": res.pairs_compared, "quarantined": quarantined,
                       "blocking": blocking_recall(res_clean.clean, None, cfg.dedupe.blocking, rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=",".join(matching_data.SETS))
    ap.add_argument("--no-splink", action="store_true")
    args = ap.parse_args()
    print(f"{'set':<13} {'method':<14} {'records':>7} {'true':>5} {'pred':>5} {'precision':>9} {'recall':>6}"
          f" {'F1':>6} {'compared':>9} {'blk.recall':>10} {'s':>6}")
    for name in args.sets.split(","):
        rows, truth = matching_data.SETS[name]()
        kind = "person" if name.startswith("febrl") else "contact" if name.startswith("people") else "place"
        _TRUTH[0] = truth
        if kind == "contact":  # the shipped contacts lot: its cleanse and its dedupe rules
            brecall = float("nan")
            runs = [("weighted", lambda rows=rows: shipped(rows, "weighted")),
                    ("probabilistic", lambda rows=rows: shipped(rows, "probabilistic"))]
        else:
            brecall = blocking_recall(rows, truth, rules(kind, "weighted").blocking)
            runs = [("weighted", lambda rows=rows, kind=kind: ours(rows, kind, "weighted")),
                    ("probabilistic", lambda rows=rows, kind=kind: ours(rows, kind, "probabilistic"))]
            if kind == "place":  # the shipped company preset as it is (the accounts lot's matching)
                runs.append(("company preset", lambda rows=rows: preset(rows, "company")))
        if not args.no_splink:
            import splink_baseline

            runs.append(("splink default", lambda rows=rows, kind=kind: splink_baseline.run(rows, kind)))
        for method, fn in runs:
            predicted, info = fn()
            s = matching_data.scores(predicted, truth)
            compared = info.get("compared", "")
            blk = info.get("blocking", brecall if method != "splink default" else float("nan"))
            print(f"{name:<13} {method:<14} {len(rows):>7} {len(truth):>5} {s['predicted_pairs']:>5}"
                  f" {s['precision']:>9.4f} {s['recall']:>6.4f} {s['f1']:>6.4f} {compared!s:>9}"
                  f" {blk:>10.4f} {info['seconds']:>6.1f}"
                  + (f"  (quarantined {info['quarantined']})" if "quarantined" in info else ""), flush=True)


if __name__ == "__main__":
    main()
