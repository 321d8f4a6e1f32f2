"""Issue 39, matching people: a row with a fixable defect matched before it is quarantined, names swapped,
birth-date slips, namesakes kept apart, sister sites of one company kept apart (plain functions: the shipped
presets and the contacts lot's rules on real jellyfish)."""

from __future__ import annotations

from datetime import datetime, UTC

import pytest
from pydantic import ValidationError

from crm_migration.matching.dedupe import PairScorer, block_keys, candidate_pairs, dedupe_rows
from crm_migration.matching.similarity import COMPARATORS
from crm_migration.model.config import DedupeRules, load_lots
from crm_migration.model.spec import FieldSpec
from crm_migration.rules.cleanse import cleanse_rows

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def _contacts():  # noqa: ANN202
    return next(lot for lot in load_lots() if lot.lot_id == "contacts").entities["contacts"]


def _raw(lid: str, first: str | None, last: str | None, email: str | None, born: str | None = None,
         city: str | None = None, modified: int = 2024) -> dict:
    """A legacy contact as the extract reads it (every e-mail in all_emails, as values_of gives them)."""
    return {"id": lid, "first_name": first, "last_name": last, "email": email,
            "all_emails": email.strip().lower() if email and email.count("@") == 1 and not email.endswith("@")
            else None, "birthdate": born, "primary_address_city": city, "primary_address_country": "FR",
            "deleted": 0, "date_modified": datetime(modified, 1, 1), "date_entered": datetime(2015, 1, 1)}


def test_an_incomplete_row_merges_into_its_complete_twin_or_is_quarantined():
    """A row missing its surname or with an unparseable e-mail takes part in the dedupe: merged into a complete
    record, the customer is migrated with the survivor's values and the merge names the defect; merged with
    none, it is quarantined with its reason. Nothing is lost either way."""
    cfg = _contacts()
    raws = [_raw("a", "Jean", "Dupont", "jean.dupont@x.fr", "1980-01-02", "Lyon", 2020),
            _raw("b", "Jean", None, "jean.dupont@x.fr", "1980-01-02", "Lyon", 2025),  # newer, but incomplete
            _raw("c", "Paul", None, "paul@y.fr", "1971-07-07"),  # no twin
            _raw("d", "Pierre", "Martin", "pierre.martin@x.fr", "1990-05-06", "Nantes"),
            _raw("e", "Pierre", "Martin", "pierre.martin@", "1990-05-06", "Nantes")]  # broken e-mail
    cleansed = cleanse_rows("contacts", raws, cfg, NOW)
    assert not cleansed.quarantined  # matched first
    assert {r["legacy_id"]: bool(r["defect"]) for r in cleansed.clean} == {"a": False, "b": True, "c": True,
                                                                          "d": False, "e": True}
    res = dedupe_rows("contacts", cleansed.clean, cfg.dedupe)
    merged = {lid: (s, rule) for lid, s, _, rule in res.merges}
    assert merged["b"][0] == "a" and "REQUIRED_MISSING" in merged["b"][1]  # the complete row survives
    assert merged["e"][0] == "d" and "EMAIL_INVALID" in merged["e"][1]
    assert [(lid, code) for lid, code, _ in res.quarantined] == [("c", "REQUIRED_MISSING")]
    assert "matched no complete record" in res.quarantined[0][2]
    survivor = next(r for r in res.survivors if r["legacy_id"] == "a")
    assert survivor["last_name"] == "Dupont" and survivor["email"] == "jean.dupont@x.fr"
    assert {lid for lid, _, _, _ in res.merges} | {q[0] for q in res.quarantined} == set("abcde")


def test_a_lot_that_does_not_dedupe_quarantines_at_cleanse_as_before():
    cfg = _contacts()
    off = cfg.model_copy(update={"dedupe": cfg.dedupe.model_copy(update={"enabled": False})})
    res = cleanse_rows("contacts", [_raw("c", "Paul", None, "paul@y.fr")], off, NOW)
    assert not res.clean and [q[1] for q in res.quarantined] == ["REQUIRED_MISSING"]


def test_names_swapped_and_birth_date_slips_still_agree():
    assert COMPARATORS["date"]("1980-03-04", "1980-04-03") >= 0.8  # day and month swapped
    assert COMPARATORS["date"]("1980-03-04", "1980-03-14") >= 0.8  # one digit
    assert COMPARATORS["date"]("1980-03-04", "1975-11-23") == 0.0
    assert COMPARATORS["email"]("jean.dupont@x.fr", "jean.dupnot@x.fr") >= 0.8  # a typo
    assert COMPARATORS["email"]("jsmith58@x.fr", "jsmith59@x.fr") == 0.0  # a number: two people as often as one
    assert COMPARATORS["email"]("a@x.fr b@y.fr", "b@y.fr") == 1.0  # one address in common
    assert COMPARATORS["name"]("j", "jean") >= 0.8  # an initial
    rules = _contacts().dedupe
    scorer = PairScorer(rules.fields, rules.missing_similarity)
    a, b = scorer.prepare([{"first_name": "Jean", "last_name": "Dupont", "birthdate": "1980-03-04"},
                           {"first_name": "Dupont", "last_name": "Jean", "birthdate": "1980-04-03"}])
    straight, = scorer.prepare([{"first_name": "Jean", "last_name": "Dupont", "birthdate": "1980-03-04"}])
    assert scorer.score(a, b) == scorer.score(a, straight) - (1 - 0.85) * 2 / sum(f.weight for f in rules.fields)


def test_namesakes_chained_through_a_row_without_birth_date_are_split():
    """John Smith born 1970 and John Smith born 1990 both look like a third John Smith with no birth date:
    the cluster the three would form holds two birth dates, so it splits at its weakest link, and the link
    cut is in the review list with its reason."""
    rows = [{"legacy_id": "a", "first_name": "John", "last_name": "Smith", "birthdate": "1970-01-01",
             "email": "john.smith@x.com", "city": "Leeds", "modified_at": NOW},
            {"legacy_id": "b", "first_name": "John", "last_name": "Smith", "birthdate": None, "email": None,
             "city": "Leeds", "modified_at": NOW},
            {"legacy_id": "c", "first_name": "John", "last_name": "Smith", "birthdate": "1990-05-05",
             "email": None, "city": None, "modified_at": NOW}]
    res = dedupe_rows("contacts", rows, DedupeRules(preset="person", threshold=0.6, review_threshold=0.5))
    cluster = {lid: s for lid, s, _, _ in res.merges}
    assert cluster["a"] != cluster["c"]
    assert cluster["a"] == cluster["b"]  # the stronger link (same city) kept
    assert any("birthdate contradicts" in why for _, _, _, why in res.review)


def test_sister_sites_of_one_company_stay_apart_and_one_building_is_compared():
    """Two branches of one agency share a switchboard number and a name prefix at two house numbers: never
    one customer. The same building under another name is compared (an address blocking key)."""
    company = DedupeRules(preset="company", threshold=0.6)
    sites = [{"legacy_id": "1", "name": "Havas Voyages Opéra", "street": "12 rue Auber", "city": "Paris",
              "phone": "+33140000000", "country_code": "FR"},
             {"legacy_id": "2", "name": "Havas Voyages Bastille", "street": "45 rue de Lyon", "city": "Paris",
              "phone": "+33140000000", "country_code": "FR"}]
    res = dedupe_rows("accounts", sites, company)
    assert all(lid == s for lid, s, _, _ in res.merges)
    one_name = [{"legacy_id": "5", "name": "Spago", "street": "1114 Horn Ave", "city": "Los Angeles",
                 "phone": "+13103850880"},
                {"legacy_id": "6", "name": "Spago (Los Angeles)", "street": "8795 Sunset Blvd", "city": "Los Angeles",
                 "phone": "+13103850880"}]  # one restaurant under one name at two addresses: still one
    assert {(lid, s) for lid, s, _, _ in dedupe_rows("accounts", one_name, company).merges} == {("5", "5"), ("6", "5")}
    renamed = [{"legacy_id": "3", "name": "Brasserie du Port", "street": "8 quai Duguay", "city": "Saint-Malo"},
               {"legacy_id": "4", "name": "Le Duguay Bar", "street": "8, Quai Duguay", "city": "Saint Malo"}]
    assert candidate_pairs(renamed, company.blocking) == [(0, 1)]
    assert any(k is not None for k in block_keys(renamed, company.blocking)[0])


def test_an_unreadable_birth_date_leaves_the_field_empty_not_the_customer_out():
    """MySQL SuiteCRMs hold '0000-00-00' birth dates: the contact is migrated without one (invalid: empty),
    counted; a date field without that option still quarantines the row."""
    cfg = _contacts()
    res = cleanse_rows("contacts", [_raw("z", "Ana", "Lopez", "ana@x.es", "0000-00-00"),
                                    _raw("y", "Bo", "Berg", "bo@x.se", "1799-01-01")], cfg, NOW)
    assert not res.quarantined and [r["birthdate"] for r in res.clean] == [None, None]
    assert res.emptied == {"birthdate": 2}
    bad = _raw("x", "Cy", "Dahl", "cy@x.dk") | {"date_entered": "0000-00-00"}  # created_at: quarantined
    assert [q[1] for q in cleanse_rows("contacts", [bad], cfg, NOW).quarantined] == ["DATE_INVALID"]


def test_invalid_empty_is_refused_on_a_required_field():
    with pytest.raises(ValidationError, match="invalid: empty on a required field"):
        FieldSpec.model_validate({"kind": "date", "required": True, "invalid": "empty"})
