"""Deterministic masking of personal data at extract time, for rehearsals on anonymised data.

Names, e-mails, phones and streets of the legacy rows are replaced before they reach staging, only on
runs into the rehearsal target (``anonymise`` param; the real target refuses it). The mask is a keyed
hash (HMAC-SHA256) of the value, so the **same input gives the same mask** -- duplicates stay duplicates
(two rows with one e-mail still share one, ``José``/``JOSE`` still agree), the dedupe, its merges and
the timings stay realistic -- while the values cannot be read back or looked up without the key:

- names -> pronounceable pseudonyms (``Kelomari``), of the value folded (case and accents ignored);
- e-mails -> ``<pseudonym>@<pseudonym>.example`` (same local part, same mask; same domain, same domain);
- phones -> the same length and separators, the country prefix kept, the other digits replaced (keyed on
  the digits only, so ``+33 1 56`` and ``0033156`` agree);
- streets -> the house number kept, the street name replaced.

The key: ``CRM_MASK_KEY`` (environment), else a random key made once and kept in ``rehearsal.mask_key``
of the rehearsal database (never in code or config; the same key night after night, so trends compare).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import unicodedata
from collections.abc import Callable

_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_STREET = re.compile(r"street|strasse|address_?line|address_?1$", re.I)
MASKED_KINDS = ("name", "email", "phone")


def _fold(value: str) -> str:
    value = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9@+]+", " ", value).strip()


def _digest(key: bytes, kind: str, value: str) -> bytes:
    return hmac.new(key, f"{kind}\x1f{value}".encode(), hashlib.sha256).digest()


def _word(d: bytes, syllables: int = 3) -> str:
    return "".join(_CONSONANTS[d[2 * k] % len(_CONSONANTS)] + _VOWELS[d[2 * k + 1] % len(_VOWELS)]
                   for k in range(syllables + d[-1] % 2))


def mask_name(key: bytes, value: str) -> str:
    """Each word of a name to its pseudonym: 'Jean-Paul Dupont' -> 'Kelomari-Vusa Tidone'."""
    def one(word: str) -> str:
        return _word(_digest(key, "name", _fold(word))).capitalize() if _fold(word) else word
    return re.sub(r"[^\W\d_]+", lambda m: one(m.group(0)), value)


def mask_email(key: bytes, value: str) -> str:
    local, at, domain = _fold(value).replace(" ", "").rpartition("@")
    if not at:
        return _word(_digest(key, "email", _fold(value)), 4)
    return f"{_word(_digest(key, 'local', local), 4)}@{_word(_digest(key, 'domain', domain), 3)}.example"


def mask_phone(key: bytes, value: str) -> str:
    digits = re.sub(r"\D", "", value)
    if len(digits) < 5:
        return value
    keep = 2 if value.lstrip().startswith(("+", "00")) else 1  # the country or trunk prefix
    d = _digest(key, "phone", digits.lstrip("0"))
    replaced = digits[:keep] + "".join(str(d[k % len(d)] % 10) for k in range(len(digits) - keep))
    it = iter(replaced)
    return re.sub(r"\d", lambda _: next(it), value)


def mask_street(key: bytes, value: str) -> str:
    m = re.match(r"^\s*(\d+[a-zA-Z]?\b)?\s*(.*)$", value, re.S)
    number, rest = (m.group(1) or ""), m.group(2)
    masked = f"{_word(_digest(key, 'street', _fold(rest)), 3).capitalize()} Street" if rest.strip() else ""
    return " ".join(p for p in (number, masked) if p)


_BY_KIND: dict[str, Callable[[bytes, str], str]] = {"name": mask_name, "email": mask_email, "phone": mask_phone,
                                                     "street": mask_street}


def masked_columns(entity: str) -> dict[str, str]:
    """Extract column -> mask kind, from the entity spec: fields of kind name, email, phone, and the text
    fields whose name or column says street (or address line)."""
    from crm_migration.model.spec import spec

    s = spec(entity)
    out = {}
    for name, f in s.fields.items():
        column = f.source or name
        if f.kind in MASKED_KINDS:
            out[column] = f.kind
        elif f.kind == "text" and (_STREET.search(name) or _STREET.search(column)):
            out[column] = "street"
    return out


def masker(entity: str, key: bytes) -> Callable[[str], str]:
    """A function from a staged row's JSON to the same row with its personal values masked."""
    columns = masked_columns(entity)

    def mask(data: str) -> str:
        row = json.loads(data)
        for column, kind in columns.items():
            value = row.get(column)
            if isinstance(value, str) and value.strip():
                row[column] = _BY_KIND[kind](key, value)
        return json.dumps(row, ensure_ascii=False, sort_keys=True)

    return mask


def mask_key(url: str) -> bytes:
    """CRM_MASK_KEY, else the rehearsal database's own key (made once, kept in rehearsal.mask_key)."""
    if os.environ.get("CRM_MASK_KEY"):
        return os.environ["CRM_MASK_KEY"].encode()
    from crm_migration.model.db import engine

    with engine(url).begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS rehearsal")
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS rehearsal.mask_key (id int PRIMARY KEY CHECK (id = 1),"
                             " key text NOT NULL)")
        conn.exec_driver_sql("INSERT INTO rehearsal.mask_key (id, key) VALUES (1, %(k)s) ON CONFLICT (id) DO NOTHING",
                             {"k": secrets.token_hex(32)})
        return conn.exec_driver_sql("SELECT key FROM rehearsal.mask_key WHERE id = 1").scalar_one().encode()
