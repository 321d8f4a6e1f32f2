"""Cleanse: standardise legacy values, exclude obsolete rows, quarantine the unfixable.

Each rule is a small function of one value. Libraries do the parsing:
ftfy repairs mojibake, email-validator checks addresses, phonenumbers gives
E.164, pycountry gives ISO 3166 codes.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, UTC
from functools import lru_cache
from typing import Any
from collections.abc import Callable

import ftfy
import phonenumbers
import pycountry
from email_validator import EmailNotValidError, validate_email

from crm_migration.model.config import EntityConfig
from crm_migration.source.legacy import NUL_MARK
from crm_migration.model.spec import EntitySpec, PerEntity, spec

# Reason codes written to stg.quarantine.reason_code
REQUIRED_MISSING = "REQUIRED_MISSING"
EMAIL_INVALID = "EMAIL_INVALID"
COUNTRY_UNKNOWN = "COUNTRY_UNKNOWN"
ROW_MALFORMED = "ROW_MALFORMED"
DUPLICATE_KEY = "DUPLICATE_KEY"
NUL_BYTE = "NUL_BYTE"
DATE_INVALID = "DATE_INVALID"
DATE_OUT_OF_RANGE = "DATE_OUT_OF_RANGE"
# Defects a complete twin can mend: a row with only these takes part in the dedupe with the field empty
# (stg.<entity>_cleanse.defect says which); merged into a complete record, the customer is migrated with the
# survivor's values; merged with none, the dedupe quarantines it with this reason.
MATCHABLE = frozenset({REQUIRED_MISSING, EMAIL_INVALID})
UNMATCHED = "matched no complete record"  # why the dedupe quarantines a row left with its defect


def defect_entry(legacy_id: str, defect: str, note: str | None = None) -> tuple[str, str, str]:
    """A pending row's defect ("CODE: detail", the cleanse's `defect` column) as a quarantine entry
    (legacy id, code, detail); note, if given, is appended to the detail (the dedupe's: UNMATCHED)."""
    code, _, detail = defect.partition(": ")
    return legacy_id, code, (f"{detail}; {note}" if note else detail)[:1000]
# A modification date this far past now is a placeholder (9999-12-31), not clock skew: quarantined.
MAX_FUTURE = timedelta(days=1)
MIN_YEAR, MAX_YEAR = 1900, 2200

_SPACES = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(value: Any) -> str | None:
    """Repair encoding, drop control characters, collapse whitespace; '' becomes None."""
    if value is None:
        return None
    return _clean_str(str(value))


@lru_cache(maxsize=65536)  # picklists, cities and countries repeat a lot
def _clean_str(s: str) -> str | None:
    # ftfy only ever changes ASCII text for HTML entities and terminal escapes: skip it otherwise
    if not s.isascii() or "&" in s or "\x1b" in s:
        s = ftfy.fix_text(s, normalization="NFC")
    s = _CONTROL.sub("", s)
    s = _SPACES.sub(" ", s).strip()
    return s or None


def clean_name(value: Any) -> str | None:
    """A person's name part: repaired text, capitalised when it was all upper or all lower."""
    return None if value is None else _clean_name(str(value))


@lru_cache(maxsize=65536)  # first names and surnames repeat: each distinct one is cleaned once
def _clean_name(value: str) -> str | None:
    s = _clean_str(value)
    if s and (s.isupper() or s.islower()):
        s = "-".join(" ".join(w[:1].upper() + w[1:].lower() for w in part.split(" ")) for part in s.split("-"))
    return s


_NAMED_ADDRESS = re.compile(r'(?:"[^"]*"|[^<>"]*)\s*<([^<>\s]+)>')


def clean_email(value: Any) -> tuple[str | None, str | None]:
    """(normalised address, error). A missing address is (None, None)."""
    return (None, None) if value is None else _clean_email(str(value))


@lru_cache(maxsize=65536)  # a shared address (info@, a family's) is validated once
def _clean_email(value: str) -> tuple[str | None, str | None]:
    s = _clean_str(value)
    if s is None:
        return None, None
    named = _NAMED_ADDRESS.fullmatch(s)  # '"Jean Dupont" <jean@x.fr>', as mail clients copy it: the address
    if named:
        s = named.group(1).strip()
    try:
        v = validate_email(s, check_deliverability=False)
    except EmailNotValidError as exc:
        return None, str(exc)
    return v.normalized.lower(), None


def clean_phone(value: Any, region: str) -> str | None:
    """E.164 when the number parses as possible; otherwise the trimmed original (a warn-level gate counts these)."""
    return None if value is None else _clean_phone(str(value), region)


@lru_cache(maxsize=65536)  # a switchboard's number is on every one of its people
def _clean_phone(value: str, region: str) -> str | None:
    s = _clean_str(value)
    if s is None:
        return None
    candidate = "+" + s[2:] if s.startswith("00") else s
    try:
        num = phonenumbers.parse(candidate, region)
        if phonenumbers.is_possible_number(num):
            return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    except phonenumbers.NumberParseException:
        pass
    return s


def country_aliases() -> dict[str, str]:
    """Names pycountry does not know (UK, Deutschland, États-Unis...): config/migration.yaml
    country_aliases, upper-cased."""
    from crm_migration.model.settings import load_migration_config

    return {k.upper(): v for k, v in load_migration_config().country_aliases.items()}


_ALIASES: list[tuple | None] = [None]  # read once per cleanse (refresh_aliases), not per value


def refresh_aliases() -> None:
    _ALIASES[0] = tuple(sorted(country_aliases().items()))


def clean_country(value: str | None) -> str | None:
    """ISO 3166-1 alpha-2 code, or None when it cannot be resolved."""
    if _ALIASES[0] is None:
        refresh_aliases()
    return _clean_country(value, _ALIASES[0])


@lru_cache(maxsize=4096)
def _clean_country(value: str | None, aliases: tuple) -> str | None:
    s = clean_text(value)
    if s is None:
        return None
    known = dict(aliases)
    key = s.upper()
    if key in known:
        return known[key]
    stripped = unicodedata.normalize("NFKD", key).encode("ascii", "ignore").decode()
    if stripped in known:
        return known[stripped]
    for lookup in (key, s):
        try:
            return pycountry.countries.lookup(lookup).alpha_2
        except LookupError:
            continue
    try:
        return pycountry.countries.search_fuzzy(s)[0].alpha_2
    except LookupError:
        return None


def website_domain(value: Any) -> str | None:
    s = clean_text(value)
    if not s:
        return None
    s = re.sub(r"^[a-z]+://", "", s.lower()).split("/")[0]
    return s.removeprefix("www.") or None


def opaque_id(value: Any) -> str | None:
    """Legacy keys are opaque: never trimmed or normalised (' lead-space' is not 'lead-space')."""
    return None if value is None or value == "" else str(value)


def to_utc(value: Any, field: str = "date") -> datetime | None:
    """A legacy timestamp as aware UTC; unreadable text ('0000-00-00', 'infinity') or a year outside
    [1900, 2200] is quarantined with the field named."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise Quarantine(DATE_INVALID, f"{field}={value[:40]!r} is not a date") from None
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise Quarantine(DATE_INVALID, f"{field}={str(value)[:40]!r} is not a date")
    if not MIN_YEAR <= value.year <= MAX_YEAR:
        raise Quarantine(DATE_OUT_OF_RANGE, f"{field}={value.isoformat()} is outside {MIN_YEAR}-{MAX_YEAR}")
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def to_date(value: Any, field: str) -> date | None:
    moment = to_utc(value, field)
    return None if moment is None else moment.date()


def modified_at(raw: dict, now: datetime) -> datetime | None:
    """The row's legacy modification time; one far in the future is a placeholder, not a change time."""
    value = to_utc(raw.get("date_modified"), "date_modified")
    if value is not None and value > now + MAX_FUTURE:
        raise Quarantine(DATE_OUT_OF_RANGE, f"date_modified={value.isoformat()} is in the future")
    return value


CLEAN_COLUMNS = PerEntity(lambda es: es.clean_columns)  # stg.<entity>_clean, from the entity's fields


@dataclass
class CleanseResult:
    clean: list[dict] = field(default_factory=list)
    quarantined: list[tuple[str, str, str, dict]] = field(default_factory=list)  # legacy_id, code, detail, raw
    excluded: list[tuple[str, str, dict]] = field(default_factory=list)  # legacy_id, rule, raw
    emptied: Counter = field(default_factory=Counter)  # field -> unreadable values dropped (invalid: empty)


class Quarantine(Exception):
    def __init__(self, code: str, detail: str, codes: tuple[str, ...] = (), row: dict | None = None):
        super().__init__(f"{code}: {detail}")
        self.code, self.detail = code, detail
        self.codes = codes or (code,)  # every defect's code
        self.row = row  # the row with the defective fields empty (clean_row)


AMOUNT_INVALID = "AMOUNT_INVALID"
BOOL_INVALID = "BOOL_INVALID"
_TRUE, _FALSE = {"1", "true", "t", "yes", "y", "on"}, {"0", "false", "f", "no", "n", "off"}


def _number(value: Any, field: str) -> float | None:
    if value in (None, ""):
        return None
    try:
        n = float(str(value).replace(" ", "").replace(",", "."))
    except ValueError:
        raise Quarantine(AMOUNT_INVALID, f"{field}={value!r} is not a number") from None
    if n != n or n in (float("inf"), float("-inf")) or n < 0:
        raise Quarantine(AMOUNT_INVALID, f"{field}={value!r} is not a non-negative finite number")
    return n


def _bool(value: Any, field: str) -> bool | None:
    if value is None or value == "":
        return None
    s = str(value).strip().lower()
    if s in _TRUE or s in _FALSE:
        return s in _TRUE
    raise Quarantine(BOOL_INVALID, f"{field}={str(value)[:40]!r} is not a yes/no value")


def _country(value: Any, field: str) -> str | None:
    country = clean_country(value)
    if value and clean_text(value) and country is None:
        raise Quarantine(COUNTRY_UNKNOWN, f"{field}={clean_text(value)!r}")
    return country


def _email(value: Any, field: str) -> str | None:
    email, err = clean_email(value)
    if err:
        raise Quarantine(EMAIL_INVALID, f"{field}={clean_text(value)!r}: {err}")
    return email


# kind -> rule(value, legacy column name); phone is done after, with the row's country
_RULES: dict[str, Callable[[Any, str], Any]] = {
    "text": lambda v, _: clean_text(v), "picklist": lambda v, _: clean_text(v), "name": lambda v, _: clean_name(v),
    "email": _email, "country": _country, "date": to_date, "datetime": to_utc, "number": _number,
    "money": _number, "bool": _bool, "domain": lambda v, _: website_domain(v), "id": lambda v, _: opaque_id(v),
    "reference": lambda v, _: opaque_id(v),
}


def clean_row(raw: dict, es: EntitySpec, cfg: EntityConfig, required: tuple[str, ...] = (),
              emptied: list[str] | None = None) -> dict:
    """One legacy row through the rule of each field's kind (config/entities/<entity>.yaml). Every defect of
    the row is found, not only the first: the quarantine names the first's code and lists them all. emptied
    gets the fields (invalid: empty) whose unreadable value was dropped."""
    row: dict = {"legacy_id": raw["id"]}
    phones, defects = [], []
    emptied = [] if emptied is None else emptied
    for name, f in es.fields.items():
        col = f.source or name
        if f.kind == "phone":
            phones.append((name, col))
        else:
            try:
                row[name] = _RULES[f.kind](raw.get(col), col)
            except Quarantine as q:
                if f.invalid == "empty":  # an optional detail: the row goes on without it
                    emptied.append(name)
                else:
                    defects.append(q)
                row[name] = None
        if f.keep_original:
            row[f"{name}_original"] = raw.get(col)
        if f.type_from:
            row[f"{name}_type"] = clean_text(raw.get(f.type_from))
    if phones:
        country = next((row[n] for n, f in es.fields.items() if f.kind == "country" and row.get(n)), None)
        for name, col in phones:
            row[name] = clean_phone(raw.get(col), country or cfg.default_region)
    missing = [f for f in required if not row.get(f) and not any(q.detail.startswith(
        f"{es.fields[f].source or f}=") for q in defects)]  # a field already named by its own defect
    if missing:
        defects.append(Quarantine(REQUIRED_MISSING, f"missing {', '.join(missing)}"))
    if len(defects) == 1:
        raise Quarantine(defects[0].code, defects[0].detail, row=row)
    if defects:
        raise Quarantine(defects[0].code, "; ".join(f"{q.code}: {q.detail}" for q in defects),
                         tuple(q.code for q in defects), row)
    row["defect"] = None
    return row


def obsolete_rule(raw: dict, cfg: EntityConfig, now: datetime) -> str | None:
    """Name of the obsolete-data rule that excludes this row, if any."""
    if cfg.obsolete.soft_deleted and str(raw.get("deleted", 0)).strip().lower() not in ("0", "none", "", *_FALSE):
        return "soft_deleted"
    years = cfg.obsolete.not_modified_for_years
    if years:
        modified = to_utc(raw.get("date_modified"))
        if modified is not None and modified < now - timedelta(days=365.25 * years):
            return f"not_modified_for_{years:g}_years"
    return None


def matches_before_quarantine(cfg: EntityConfig) -> bool:
    """The entity dedupes (fields and blocking keys, of its own or its preset): a row with only MATCHABLE
    defects goes to the dedupe, not to the quarantine."""
    d = cfg.dedupe
    return bool(d is not None and d.enabled and d.fields and d.blocking)


def cleanse_rows(entity: str, raws: list[dict], cfg: EntityConfig, now: datetime | None = None) -> CleanseResult:
    """Route every raw row to clean, excluded or quarantined: none is dropped. A row whose only defects a
    complete twin can mend (MATCHABLE) is clean with those fields empty and its defect named, when the
    entity dedupes: the dedupe merges it or quarantines it."""
    now = now or datetime.now(UTC)
    matchable = matches_before_quarantine(cfg)
    es = spec(entity)
    refresh_aliases()
    required = cfg.required or es.required
    out = CleanseResult()
    seen = Counter(str(raw.get("id")) for raw in raws if raw.get("id") not in (None, ""))
    for raw in raws:
        legacy_id = raw.get("id")
        try:
            if not legacy_id or not str(legacy_id).strip():
                raise Quarantine(REQUIRED_MISSING, "id is empty")
            if seen[str(legacy_id)] > 1:  # which row is the real one is for a person to decide
                raise Quarantine(DUPLICATE_KEY, f"{seen[str(legacy_id)]} legacy rows share this id")
            nul = raw.get(NUL_MARK) or sorted(k for k, v in raw.items() if isinstance(v, str) and "\x00" in v)
            if nul:
                raise Quarantine(NUL_BYTE, f"NUL byte in {', '.join(nul)}")
            modified_at(raw, now)
            rule = obsolete_rule(raw, cfg, now)
            if rule:
                out.excluded.append((str(legacy_id), rule, raw))
                continue
            dropped: list[str] = []
            out.clean.append(clean_row(raw, es, cfg, required, dropped))
            out.emptied.update(dropped)
        except Quarantine as q:
            if matchable and q.row is not None and set(q.codes) <= MATCHABLE:
                out.clean.append({**q.row, "defect": f"{q.code}: {q.detail}"[:1000]})
                continue
            out.quarantined.append((legacy_id, q.code, q.detail, raw))
        except (ValueError, TypeError, KeyError) as exc:  # a row the rules cannot read at all
            out.quarantined.append((legacy_id, ROW_MALFORMED, f"{type(exc).__name__}: {exc}"[:500], raw))
    return out
