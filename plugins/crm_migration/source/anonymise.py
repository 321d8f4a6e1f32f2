"""Deterministic masking of personal data at extract time, for rehearsals on anonymised data.

Only on runs into the rehearsal target (``anonymise`` param; the real target refuses it). What is masked is
an **allow-list**: every field of kind text, name, e-mail, phone or domain of every entity is masked unless
its entity file marks it ``safe: true`` (a salutation, an activity type, a postcode); ids, references,
picklists, countries, numbers, dates and flags are business values and stay. The relations to values (a
person's every e-mail and phone) are masked the same way when they are synced (``stages.relations``).

The masks keep what the migration's rules look at, so a rehearsal quarantines and merges what production
would:

- **the shape**: every letter becomes a letter (its case kept), every digit a digit, everything else stays
  (spaces, dots, ``@``, dashes): the same length, an empty value stays empty, a broken e-mail stays broken
  (``jean dupont@example`` keeps its space), a phone keeps its length and its country or trunk prefix;
  an e-mail keeps its top-level domain (``.com``, not personal);
- **sameness**: the same word (case and accents ignored) always gets the same mask, in every field and
  every entity (``Dupont`` in a name, an e-mail, a company name or a free text), so duplicates stay
  duplicates; a user name built from a person's name (``jdupont``) is built from the masked name;
- **nearness**: a word's letters are replaced through a keyed substitution chosen by the word's initial,
  a derangement within each of Soundex's letter classes. Two words with one initial one typo or one
  transposition apart (``Smith`` / ``Smyth``, ``Jon`` / ``John``, ``Weinhold`` / ``Weinhodl``) stay as far
  apart, and words with one Soundex code keep one code (it starts with the initial), so blocking and
  Jaro-Winkler see what they saw; no letter is left as it was, so a masked word never equals its original.
  Digits (house numbers, phones) are masked by a keyed hash of the whole run: equal stays equal.

`rehearsal.masks: opaque` (config/migration.yaml) trades nearness for secrecy: each word becomes keyed random
letters of its length (shape, sameness and defects kept; fuzzy duplicates may then not merge as in production).

What the default costs: this is pseudonymisation against casual reading, not encryption -- a masked word keeps its
length and its letters' Soundex classes, and the substitutions could be recovered by someone with many masked
names, the scheme and time (keep the rehearsal database in-house); words with different initials
(``Catherine`` / ``Katherine``) are no longer near. Birth dates
and other dates are not masked (they are not text; a team that must hide them marks the rehearsal's scope).

The key: ``CRM_MASK_KEY`` (environment), else a random key made once and kept in ``rehearsal.mask_key``
of the rehearsal database (never in code or config; the same key night after night, so trends compare).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
import re
import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache

import phonenumbers


from crm_migration.model.db import engine
from crm_migration.model.settings import load_migration_config
from crm_migration.model.spec import spec
from crm_migration.model.words import LEGAL_WORD

# Soundex's letter classes: vowels (and y), h/w, then the coded consonant groups; l and r are swapped
_CLASSES = ("aeiouy", "hw", "bfpv", "cgjkqsxz", "dt", "mn")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
MASKED_KINDS = ("text", "name", "email", "phone", "domain")
_RUN = re.compile(r"[^\W\d_]+|\d+")
_EMAIL = re.compile(r"^(.*)@(.*)$", re.S)


def _fold_char(c: str) -> str:
    return unicodedata.normalize("NFKD", c).encode("ascii", "ignore").decode().lower()


def _digest(key: bytes, kind: str, value: str) -> bytes:
    return hmac.new(key, f"{kind}\x1f{value}".encode(), hashlib.sha256).digest()


@lru_cache(maxsize=4096)
def _substitution(key: bytes, initial: str) -> dict[str, str]:
    """The letter substitution of the words with this initial: a keyed derangement within each of Soundex's
    letter classes (no letter maps to itself), l <-> r."""
    rng = random.Random(_digest(key, "initial", initial))
    table = {"l": "r", "r": "l"}
    for cls in _CLASSES:
        letters = list(cls)
        shuffled = letters[1:] + letters[:1]  # a derangement; shuffled by the key below, kept deranged
        rng.shuffle(shuffled)
        while any(a == b for a, b in zip(letters, shuffled, strict=True)):
            rng.shuffle(shuffled)
        table.update(zip(letters, shuffled, strict=True))
    return table


class OpaqueKey(bytes):
    """The key of `rehearsal.masks: opaque`: each word becomes keyed random letters (no substitution to
    recover; near words are no longer near, so fuzzy duplicates may not merge as in production)."""


def with_mode(key: bytes) -> bytes:
    """The key as config/migration.yaml's rehearsal.masks wants it used (near: the default; opaque)."""
    return OpaqueKey(key) if load_migration_config().rehearsal.masks == "opaque" else key


def mask_word(key: bytes, word: str) -> str:
    """A word's letters through the substitution of its initial (opaque: keyed letters of the whole word);
    case kept, length kept. Letters with no ASCII fold (another script) become keyed letters."""
    folded = "".join(_fold_char(c)[:1] or "?" for c in word)
    if isinstance(key, OpaqueKey):
        d = _digest(key, "opaque", folded)
        return "".join((_LETTERS[d[k % len(d)] % 26]).upper() if c.isupper() else _LETTERS[d[k % len(d)] % 26]
                       for k, c in enumerate(word))
    table = _substitution(key, folded[:1])
    out = []
    for k, (c, f) in enumerate(zip(word, folded, strict=True)):
        m = table.get(f) or _LETTERS[_digest(key, "letter", f"{folded}\x1f{k}")[0] % 26]
        out.append(m.upper() if c.isupper() else m)
    return "".join(out)


def mask_digits(key: bytes, run: str) -> str:
    d = _digest(key, "digits", run)
    return "".join(str(d[k % len(d)] % 10) for k in range(len(run)))


def _mask_runs(key: bytes, text: str, names: tuple[str, ...] = ()) -> str:
    """Every letter run and digit run of text masked; a run that holds one of the row's names (folded) is
    masked around the masked name (``jdupont`` -> the initial of the masked first name + the masked name)."""
    def one(m: re.Match) -> str:
        run = m.group(0)
        if run.isdigit():
            return mask_digits(key, run)
        low = "".join(_fold_char(c)[:1] or c for c in run)
        for name in names:
            at = low.find(name)
            if at >= 0 and (len(name) < len(run)):
                head, body, tail = run[:at], run[at:at + len(name)], run[at + len(name):]
                return _initials(key, head, names) + mask_word(key, body) + _initials(key, tail, names)
        if LEGAL_WORD.match(low):  # a legal form, a joining word ("SA", "GmbH", "and"): not personal
            return run
        return mask_word(key, run)
    return _RUN.sub(one, text)


def _initials(key: bytes, part: str, names: tuple[str, ...]) -> str:
    """A user name's initial: the masked initial of the row's name that starts with it, else masked."""
    if len(part) == 1:
        for name in names:
            if name[:1] == _fold_char(part)[:1]:
                m = mask_word(key, name)[0]
                return m.upper() if part.isupper() else m
    return _RUN.sub(lambda m: mask_word(key, m.group(0)) if not m.group(0).isdigit() else mask_digits(key, m.group(0)),
                    part)


def mask_text(key: bytes, value: str, names: tuple[str, ...] = ()) -> str:
    """Any text: its shape kept (length, case, punctuation, spaces); each e-mail-like token keeps its '@'
    and its top-level domain."""
    def token(t: str) -> str:
        m = _EMAIL.match(t)
        if not m:
            return _mask_runs(key, t, names)
        local, domain = m.group(1), m.group(2)
        head, dot, tld = domain.rpartition(".")
        masked_domain = (_mask_runs(key, head) + dot + tld) if dot and tld.isalpha() else _mask_runs(key, domain)
        return f"{_mask_runs(key, local, names)}@{masked_domain}"
    return re.sub(r"\S+", lambda m: token(m.group(0)), value)


def _kept_digits(value: str) -> int:
    """How many leading digits a phone keeps: its country code with the 00 before it (+33 -> 2, 0033 -> 4,
    +1 -> 1, +353 -> 3), else the trunk digit (1)."""
    v = value.strip()
    if not v.startswith(("+", "00")):
        return 1
    prefix = 2 if v.startswith("00") else 0
    try:
        return prefix + len(str(phonenumbers.parse("+" + v.lstrip("+")[prefix:], None).country_code))
    except phonenumbers.NumberParseException:
        return prefix + 2


def mask_phone(key: bytes, value: str) -> str:
    """Its length and separators kept, the country code (``+33``, ``0033``) or the trunk digit kept, the other
    digits a keyed hash of the digits after it (``+33 1 56`` and ``0033156`` agree); letters masked."""
    digits = re.sub(r"\D", "", value)
    if len(digits) < 5:  # not a phone number: masked as text (it stays one)
        return mask_text(key, value)
    keep = _kept_digits(value)
    d = _digest(key, "phone", digits[keep:])
    # the first masked digit is never 0 (a national 01 56 ... must not become 00 ..., an international prefix)
    replaced = digits[:keep] + "".join(str(d[k % len(d)] % 9 + 1 if k == 0 else d[k % len(d)] % 10)
                                       for k in range(len(digits) - keep))
    it = iter(replaced)
    return _RUN.sub(lambda m: "".join(next(it) for _ in m.group(0)) if m.group(0).isdigit()
                    else mask_word(key, m.group(0)), value)


def masked_columns(entity: str) -> dict[str, str]:
    """Extract column (or staged field, for values_of) -> mask kind ("text" or "phone"), from the entity
    spec: every field of a masked kind not marked safe."""
    out: dict[str, str] = {}
    for name, f in spec(entity).fields.items():
        if f.kind not in MASKED_KINDS or f.safe:
            continue
        column = name if f.values_of else (f.source or name)
        out[column] = "phone" if f.kind == "phone" and out.get(column, "phone") == "phone" else "text"
    return out


def _row_names(entity: str) -> tuple[str, ...]:
    return tuple((f.source or n) for n, f in spec(entity).fields.items() if f.kind == "name" and not f.safe)


def masker(entity: str, key: bytes) -> Callable[[str], str]:
    """A function from a staged row's JSON to the same row with its personal values masked."""
    columns, name_columns = masked_columns(entity), _row_names(entity)

    def mask(data: str) -> str:
        row = json.loads(data)
        names = tuple(sorted({"".join(_fold_char(c)[:1] for c in w) for c in name_columns
                              if isinstance(row.get(c), str) for w in _RUN.findall(row[c])
                              if len(w) >= 3 and not w.isdigit()}, key=len, reverse=True))
        for column, kind in columns.items():
            value = row.get(column)
            if isinstance(value, str) and value:
                row[column] = mask_phone(key, value) if kind == "phone" else mask_text(key, value, names)
        return json.dumps(row, ensure_ascii=False, sort_keys=True)

    return mask


def value_masker(kind: str, key: bytes) -> Callable[[str], str]:
    """A relation's values (a person's e-mails, phones) masked as the rows' fields of that kind are."""
    return (lambda v: mask_phone(key, v)) if kind == "phone" else (lambda v: mask_text(key, v))


def _key(conn) -> bytes:  # noqa: ANN001 - a target connection
    """CRM_MASK_KEY, else the one kept in the rehearsal database (rehearsal.mask_key), in the configured mode."""
    if os.environ.get("CRM_MASK_KEY"):
        return with_mode(os.environ["CRM_MASK_KEY"].encode())
    return with_mode(conn.exec_driver_sql("SELECT key FROM rehearsal.mask_key WHERE id = 1").scalar_one().encode())


def target_key(conn) -> bytes | None:  # noqa: ANN001 - a target connection
    """The mask key of a target holding masked rows (a rehearsal on anonymised data), else None."""
    if not conn.exec_driver_sql("SELECT to_regclass('crm_migration.anonymised') IS NOT NULL").scalar():
        return None
    return _key(conn)


def relation_mask(conn, kind: str) -> Callable[[str], str] | None:  # noqa: ANN001 - a target connection
    """The mask of a relation's values in this target (None: the target holds real data)."""
    key = target_key(conn)
    return value_masker(kind, key) if key is not None else None


def masked_corrections(url: str, entity: str, fixes: dict[str, list]) -> dict[str, list]:
    """A data owner's corrections as a target holding masked rows takes them: the value of a masked field
    masked as the field's rows are (a corrected e-mail is a real one)."""
    if not fixes:
        return fixes
    with engine(url).connect() as conn:
        key = target_key(conn)
    if key is None:
        return fixes
    fields = spec(entity).fields

    def one(c):  # noqa: ANN001, ANN202 - a data_owner.Correction
        f = fields.get(c.field)
        if f is None or f.kind not in MASKED_KINDS or f.safe or not c.value:
            return c
        return replace(c, value=value_masker(f.kind, key)(c.value))
    return {legacy_id: [one(c) for c in found] for legacy_id, found in fixes.items()}


def mask_key(url: str) -> bytes:
    """The key of an anonymised run into this target: CRM_MASK_KEY, else the rehearsal database's own (made
    once, kept in rehearsal.mask_key). The target is marked as holding masked rows (crm_migration.anonymised):
    its relations and corrections are then masked too (target_key)."""
    with engine(url).begin() as conn:
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('crm_migration.anonymise'))")  # entities in threads
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS crm_migration.anonymised (id int PRIMARY KEY CHECK (id = 1),"
                             " since timestamptz NOT NULL DEFAULT now())")
        conn.exec_driver_sql("INSERT INTO crm_migration.anonymised (id) VALUES (1) ON CONFLICT (id) DO NOTHING")
        if not os.environ.get("CRM_MASK_KEY"):
            conn.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS rehearsal")
            conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS rehearsal.mask_key (id int PRIMARY KEY CHECK (id = 1),"
                                 " key text NOT NULL)")
            conn.exec_driver_sql("INSERT INTO rehearsal.mask_key (id, key) VALUES (1, %(k)s) ON CONFLICT (id)"
                                 " DO NOTHING", {"k": secrets.token_hex(32)})
        return _key(conn)
