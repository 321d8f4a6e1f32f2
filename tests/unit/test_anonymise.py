"""Masking for rehearsals on anonymised data: deterministic, keyed, shape-keeping, duplicates kept."""

from __future__ import annotations

import json

from crm_migration.source.anonymise import mask_email, mask_name, mask_phone, mask_street, masked_columns, masker

KEY, OTHER = b"k" * 32, b"o" * 32


def test_same_input_same_mask_and_nothing_readable():
    assert mask_name(KEY, "José Dupont") == mask_name(KEY, "JOSE dupont")  # case and accents: the same person
    assert mask_name(KEY, "Dupont") != mask_name(KEY, "Durand") and "Dupont" not in mask_name(KEY, "Dupont")
    assert mask_name(KEY, "Dupont") != mask_name(OTHER, "Dupont")  # keyed: no lookup table without the key
    assert mask_name(KEY, "Jean-Paul").count("-") == 1
    e = mask_email(KEY, "Jean.Dupont@Example.FR")
    assert e == mask_email(KEY, "jean.dupont@example.fr") and e.endswith(".example") and "dupont" not in e
    assert e.split("@")[1] == mask_email(KEY, "marie@example.fr").split("@")[1]  # one domain, one masked domain
    p = mask_phone(KEY, "+33 1 56 13 38 90")
    assert p.startswith("+3") and len(p) == len("+33 1 56 13 38 90") and p != "+33 1 56 13 38 90"
    assert p.replace(" ", "")[2:] == mask_phone(KEY, "+33156133890")[2:]
    s = mask_street(KEY, "42 Rue de Rivoli")
    assert s.startswith("42 ") and "Rivoli" not in s and s == mask_street(KEY, "42 rue de rivoli")


def test_rows_are_masked_by_the_entity_spec():
    cols = masked_columns("contacts")
    assert cols["first_name"] == cols["last_name"] == "name" and "email" in cols.values() and "phone" in cols.values()
    assert masked_columns("accounts")["billing_address_street"] == "street"
    assert "billing_address_city" not in masked_columns("accounts")  # cities and postcodes stay
    row = {"id": "c-1", "first_name": "Jean", "last_name": "Dupont", "email": "jean@example.fr",
           "phone_work": "+33 1 56 13 38 90", "lead_source": "Web Site"}
    out = json.loads(masker("contacts", KEY)(json.dumps(row)))
    assert out["id"] == "c-1" and out["lead_source"] == "Web Site"  # ids and business values untouched
    assert all(out[k] != row[k] for k in ("first_name", "last_name", "email", "phone_work"))
