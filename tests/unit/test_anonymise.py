"""Masking for rehearsals on anonymised data: an allow-list, deterministic, keyed; it keeps each value's
shape and defects (a rehearsal quarantines what production would) and its nearness (it merges what
production would)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jellyfish
import pytest

from crm_migration.rules.cleanse import clean_email, clean_phone
from crm_migration.source.anonymise import (MASKED_KINDS, OpaqueKey, mask_phone, mask_text, mask_word,
                                            masked_columns, masker, with_mode)
from crm_migration.model.spec import specs

KEY, OTHER = b"k" * 32, b"o" * 32
ROOT = Path(__file__).resolve().parents[2]


def test_same_input_same_mask_nothing_left_and_keyed():
    assert mask_text(KEY, "José Dupont") == mask_text(KEY, "Jose Dupont")  # accents: the same person
    assert mask_text(KEY, "JOSE DUPONT").lower() == mask_text(KEY, "jose dupont")  # case kept, mask the same
    assert mask_text(KEY, "Dupont") != mask_text(OTHER, "Dupont")  # keyed: no lookup table without the key
    for word in ("Dupont", "Lee", "Anna", "Otto", "Smith", "Martin"):  # no letter stays: never the original
        masked = mask_word(KEY, word)
        assert len(masked) == len(word) and all(a.lower() != b.lower() for a, b in zip(masked, word, strict=True))
    assert mask_text(KEY, "Jean-Paul O'Neil, 42") == mask_text(KEY, "Jean-Paul O'Neil, 42")
    shape = mask_text(KEY, "Jean-Paul O'Neil, 42")
    assert [c.isalpha() for c in shape] == [c.isalpha() for c in "Jean-Paul O'Neil, 42"] and shape[4] == "-"


def test_near_words_stay_near_and_keep_their_phonetic_key():  # one initial: one substitution
    for a, b in (("Smith", "Smyth"), ("Jon", "John"), ("Meyer", "Meier"), ("Dupont", "Dupond"),
                 ("Weinhold", "Weinhodl"), ("Gilbert", "Gilbetr"), ("Merle", "Melre")):
        ma, mb = mask_word(KEY, a), mask_word(KEY, b)
        assert jellyfish.damerau_levenshtein_distance(ma, mb) == jellyfish.damerau_levenshtein_distance(a, b)
        assert jellyfish.jaro_winkler_similarity(ma, mb) == pytest.approx(jellyfish.jaro_winkler_similarity(a, b))
        # blocking on soundex pairs them as before (and only them)
        assert (jellyfish.soundex(ma) == jellyfish.soundex(mb)) == (jellyfish.soundex(a) == jellyfish.soundex(b))


@pytest.mark.parametrize("email", ["jean.dupont@example.fr", "Jean.Dupont@Example.FR", "jean dupont@example.fr",
                                   "jean.dupont@", "jean.dupont@example", "jean..dupont@example.fr", "@example.fr",
                                   "jean.dupont(at)example.fr", "jean@exa_mple.com", "j@x.co"])
def test_an_email_keeps_its_validity(email):
    masked = mask_text(KEY, email)
    assert len(masked) == len(email) and masked != email
    assert (clean_email(masked)[0] is None) == (clean_email(email)[0] is None), (email, masked)


@pytest.mark.parametrize("phone, region", [("+33 1 56 13 38 90", "FR"), ("01 56 13 38 90", "FR"),
                                           ("0033156133890", "FR"), ("+1 (212) 555-0100", "US"), ("555-01", "US"),
                                           ("call the desk", "FR"), ("+44 20 7946 0958", "GB"), ("12", "FR")])
def test_a_phone_keeps_its_validity_its_prefix_and_its_length(phone, region):
    masked = mask_phone(KEY, phone)
    assert len(masked) == len(phone) and masked != phone
    assert (clean_phone(masked, region) is None) == (clean_phone(phone, region) is None), (phone, masked)
    assert mask_phone(KEY, "+33 1 56 13 38 90").replace(" ", "")[3:] == mask_phone(KEY, "0033156133890")[4:]


def test_every_text_field_is_masked_unless_marked_safe():
    for entity, s in specs().items():
        cols = masked_columns(entity)
        for name, f in s.fields.items():
            column = name if f.values_of else (f.source or name)
            if f.kind in MASKED_KINDS and not f.safe:
                assert column in cols, (entity, name)
            elif f.kind not in MASKED_KINDS:
                assert column not in cols or any(  # a column read by a masked field too (website / domain)
                    (g.source or n) == column and g.kind in MASKED_KINDS and not g.safe for n, g in s.fields.items()
                ), (entity, name)
    assert "primary_address_postalcode" not in masked_columns("contacts")  # marked safe
    assert "name" in masked_columns("accounts")  # company names: masked (a company may bear a surname)


def test_rows_are_masked_and_user_names_follow_the_masked_names():
    row = {"id": "c-1", "first_name": "Jean", "last_name": "Dupont", "email": "jean.dupont@example.fr",
           "phone_work": "+33 1 56 13 38 90", "lead_source": "Web Site", "salutation": "Mr.",
           "primary_address_city": "Paris", "title": "", "all_emails": "jean.dupont@example.fr jd@example.fr"}
    out = json.loads(masker("contacts", KEY)(json.dumps(row)))
    assert out["id"] == "c-1" and out["lead_source"] == "Web Site" and out["salutation"] == "Mr."  # not personal
    assert all(out[k] != row[k] for k in ("first_name", "last_name", "email", "phone_work", "primary_address_city"))
    assert out["title"] == ""  # an empty value stays empty
    assert out["email"] == out["all_emails"].split()[0]  # one address, one mask, in every field
    assert out["email"] == mask_text(KEY, row["email"])  # as the relation's values are masked
    user = json.loads(masker("users", KEY)(json.dumps({"user_name": "jdupont", "first_name": "Jean",
                                                       "last_name": "Dupont"})))
    assert user["user_name"] == (user["first_name"][0] + user["last_name"]).lower()
    text = json.loads(masker("activities", KEY)(json.dumps({"description": "Called Jean Dupont on +33 1 56 13"
                                                                           " 38 90", "activity_type": "Call"})))
    assert len(text["description"]) == 39 and "Dupont" not in text["description"] and text["activity_type"] == "Call"
    assert mask_word(KEY, "Dupont") in text["description"]  # the same name, the same mask, in free text too


def test_opaque_masks_keep_shape_sameness_and_defects(tmp_path, monkeypatch):
    conf = tmp_path / "config"
    shutil.copytree(ROOT / "config", conf)
    yaml = conf / "migration.yaml"
    yaml.write_text(yaml.read_text().replace("  masks: near", "  masks: opaque"))
    monkeypatch.setenv("CRM_CONFIG_DIR", str(conf))
    key = with_mode(KEY)
    assert isinstance(key, OpaqueKey)
    assert mask_text(key, "José Dupont") == mask_text(key, "JOSE DUPONT").title() != mask_text(KEY, "José Dupont")
    near = mask_word(KEY, "Smith"), mask_word(KEY, "Smyth")
    far = mask_word(key, "Smith"), mask_word(key, "Smyth")
    assert jellyfish.hamming_distance(*near) == 1 and jellyfish.hamming_distance(*far) > 1  # no substitution
    for email in ("jean.dupont@example.fr", "jean dupont@example.fr", "jean.dupont@"):
        masked = mask_text(key, email)
        assert len(masked) == len(email) and (clean_email(masked)[0] is None) == (clean_email(email)[0] is None)
