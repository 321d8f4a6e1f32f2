"""Matching quality without labels: our dedupe (weighted and probabilistic) next to Splink at its
defaults, side by side in one run, on FEBRL 1-4 (persons) and Fodors-Zagat (restaurants).

    python bench/bench_matching.py [--sets febrl1,fodors_zagat] [--no-splink]

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


def blocking_recall(rows: list[dict], truth: set, blocking) -> float:
    keys = block_keys(rows, blocking)
    at = {r["legacy_id"]: k for r, k in zip(rows, keys, strict=True)}
    hit = sum(any(x is not None and x == y for x, y in zip(at[a], at[b], strict=True)) for a, b in truth)
    return hit / len(truth)


def ours(rows: list[dict], kind: str, method: str) -> tuple[set, dict]:
    r = rules(kind, method)
    t = time.perf_counter()
    res = dedupe_rows("bench", rows, r)
    seconds = time.perf_counter() - t
    clusters: dict[str, list[str]] = {}
    for lid, survivor, _, _ in res.merges:
        clusters.setdefault(survivor, []).append(lid)
    predicted = {tuple(sorted(p)) for members in clusters.values() for p in combinations(members, 2)}
    return predicted, {"seconds": seconds, "compared": res.pairs_compared}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default=",".join(matching_data.SETS))
    ap.add_argument("--no-splink", action="store_true")
    args = ap.parse_args()
    print(f"{'set':<13} {'method':<14} {'records':>7} {'true':>5} {'pred':>5} {'precision':>9} {'recall':>6}"
          f" {'F1':>6} {'compared':>9} {'blk.recall':>10} {'s':>6}")
    for name in args.sets.split(","):
        rows, truth = matching_data.SETS[name]()
        kind = "person" if name.startswith("febrl") else "place"
        brecall = blocking_recall(rows, truth, rules(kind, "weighted").blocking)
        runs = [("weighted", lambda rows=rows, kind=kind: ours(rows, kind, "weighted")),
                ("probabilistic", lambda rows=rows, kind=kind: ours(rows, kind, "probabilistic"))]
        if not args.no_splink:
            import splink_baseline

            runs.append(("splink default", lambda rows=rows, kind=kind: splink_baseline.run(rows, kind)))
        for method, fn in runs:
            predicted, info = fn()
            s = matching_data.scores(predicted, truth)
            compared = info.get("compared", "")
            print(f"{name:<13} {method:<14} {len(rows):>7} {len(truth):>5} {s['predicted_pairs']:>5}"
                  f" {s['precision']:>9.4f} {s['recall']:>6.4f} {s['f1']:>6.4f} {compared!s:>9}"
                  f" {brecall if method != 'splink default' else float('nan'):>10.4f} {info['seconds']:>6.1f}",
                  flush=True)


if __name__ == "__main__":
    main()
