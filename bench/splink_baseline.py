"""Splink at its defaults, on the same sets, as the yardstick of the matching benchmark.

"Default" here is what Splink's documentation sets up for such data, without labels: its standard
comparison per field type (NameComparison with term-frequency adjustment for names,
DateOfBirthComparison, EmailComparison, JaroWinklerAtThresholds for other text, ExactMatch for codes),
blocking on pairs of exact fields, lambda from deterministic rules (recall 0.7), u by random sampling
(1e7 pairs, seeded), m by EM over two blocking rules, then predict and connected components at a
match probability of 0.9. Splink is a dev-only requirement (requirements-dev.txt).
"""

from __future__ import annotations

import logging
import time

PERSON = "person"
PLACE = "place"
CONTACT = "contact"  # the generated people (bench/people_data.py), with the contacts extract's column names


def _settings(kind: str, columns: list[str]):
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    if kind == PERSON:
        comparisons = [cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
                       cl.NameComparison("surname").configure(term_frequency_adjustments=True),
                       cl.DateOfBirthComparison("date_of_birth", input_is_string=True, datetime_format="%Y%m%d"),
                       cl.DamerauLevenshteinAtThresholds("soc_sec_id", [1, 2]),
                       cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
                       cl.JaroWinklerAtThresholds("address_1", [0.9, 0.7]),
                       cl.ExactMatch("postcode").configure(term_frequency_adjustments=True),
                       cl.JaroWinklerAtThresholds("suburb", [0.9, 0.7]),
                       cl.ExactMatch("state")]
        blocking = [block_on("given_name", "surname"), block_on("surname", "date_of_birth"),
                    block_on("given_name", "date_of_birth"), block_on("soc_sec_id"),
                    block_on("postcode", "street_number")]
        deterministic = ["l.soc_sec_id = r.soc_sec_id AND l.date_of_birth = r.date_of_birth"]
        em = [block_on("given_name", "surname"), block_on("date_of_birth")]
    elif kind == CONTACT:
        comparisons = [cl.NameComparison("first_name").configure(term_frequency_adjustments=True),
                       cl.NameComparison("last_name").configure(term_frequency_adjustments=True),
                       cl.DateOfBirthComparison("birthdate", input_is_string=True, datetime_format="%Y-%m-%d"),
                       cl.EmailComparison("email"),
                       cl.ExactMatch("primary_address_city").configure(term_frequency_adjustments=True),
                       cl.ExactMatch("primary_address_postalcode"),
                       cl.ExactMatch("phone_digits")]
        blocking = [block_on("first_name", "last_name"), block_on("last_name", "birthdate"),
                    block_on("first_name", "birthdate"), block_on("email"), block_on("phone_digits")]
        deterministic = ["l.email = r.email AND l.birthdate = r.birthdate",
                         "l.first_name = r.first_name AND l.last_name = r.last_name AND l.birthdate = r.birthdate"]
        em = [block_on("first_name", "last_name"), block_on("birthdate")]
    else:
        comparisons = [cl.JaroWinklerAtThresholds("name", [0.9, 0.7]).configure(term_frequency_adjustments=True),
                       cl.JaroWinklerAtThresholds("street", [0.9, 0.7]),
                       cl.ExactMatch("city").configure(term_frequency_adjustments=True),
                       cl.ExactMatch("phone_digits"),
                       cl.ExactMatch("category")]
        blocking = [block_on("name"), block_on("phone_digits"), block_on("city", "street")]
        deterministic = ["l.phone_digits = r.phone_digits AND l.name = r.name"]
        em = [block_on("city"), block_on("phone_digits")]
    settings = SettingsCreator(link_type="dedupe_only", unique_id_column_name="legacy_id", comparisons=comparisons,
                               blocking_rules_to_generate_predictions=blocking, retain_matching_columns=False)
    return settings, deterministic, em


def run(rows: list[dict], kind: str, threshold: float = 0.9) -> tuple[set[tuple[str, str]], dict]:
    import re

    import pandas as pd
    from splink import DuckDBAPI, Linker

    logging.getLogger("splink").setLevel(logging.ERROR)
    df = pd.DataFrame(rows).replace({"": None})
    if kind == CONTACT:
        df = df[["legacy_id", "first_name", "last_name", "birthdate", "email", "primary_address_city",
                 "primary_address_postalcode", "phone_work"]].replace({"": None})
        df["phone_digits"] = df["phone_work"].map(lambda s: re.sub(r"\D", "", s or "")[-9:] or None)
        df = df.drop(columns=["phone_work"])
    if kind == PLACE:
        df["phone_digits"] = df["phone"].map(lambda s: re.sub(r"\D", "", s or "") or None)
    start = time.perf_counter()
    settings, deterministic, em = _settings(kind, list(df.columns))
    db = DuckDBAPI()
    linker = Linker(db.register(df), settings, log_level=None)
    linker.training.estimate_probability_two_random_records_match(deterministic, recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e7, seed=1)
    for rule in em:
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    pred = linker.inference.predict(threshold_match_probability=threshold)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(pred, threshold).as_pandas_dataframe()
    seconds = time.perf_counter() - start
    groups: dict = {}
    for lid, cid in zip(clusters["legacy_id"], clusters["cluster_id"], strict=True):
        groups.setdefault(cid, []).append(str(lid))
    predicted = {tuple(sorted((a, b))) for m in groups.values() for i, a in enumerate(m) for b in m[i + 1:]}
    return predicted, {"seconds": seconds}
