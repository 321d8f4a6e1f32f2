"""Similarity of two values of a field, by its comparison kind, and the transforms applied before.

Used by the weighted score and the must-agree checks (crm_migration.matching.dedupe); the probabilistic method
compares the same kinds in SQL (crm_migration.matching.linkage). jellyfish gives the string distances.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from functools import lru_cache

import jellyfish

from crm_migration.model.words import LEGAL

# Edit-distance similarities cost len(a) * len(b): a value is cut to this many characters before any
# transform, key or comparison (a 1 MB name costs what a 256-character one does; no real name is longer).
MAX_COMPARED = 256


def capped(value: object) -> str:
    return str(value)[:MAX_COMPARED]


@lru_cache(maxsize=200_000)
def fold(s: str) -> str:
    """Lower case, accents stripped, punctuation to spaces."""
    s = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", " ", s).strip()


def company_key(name: str) -> str:
    return re.sub(r"\s+", " ", LEGAL.sub(" ", fold(name))).strip()


def _first_token(s: str) -> str:
    return s.split(" ", 1)[0]


TRANSFORMS: dict[str, Callable[[str], str]] = {
    "raw": lambda s: s,
    "fold": fold,
    "company": company_key,
    "digits": lambda s: re.sub(r"\D", "", s),
    "soundex": lambda s: jellyfish.soundex(fold(s)) if fold(s) else "",
    # soundex without its first letter: survives a typo in the first letter (Kristensen / Christensen)
    "soundex_tail": lambda s: jellyfish.soundex(fold(s))[1:] if fold(s) else "",
    "metaphone": lambda s: jellyfish.metaphone(fold(s)) if fold(s) else "",
    "nysiis": lambda s: jellyfish.nysiis(fold(s)) if fold(s) else "",
    "initial": lambda s: fold(s)[:1],
    "first_token": lambda s: _first_token(fold(s)),
    "first_token_metaphone": lambda s: jellyfish.metaphone(_first_token(company_key(s)))[:6] if company_key(s) else "",
    # a street's house number and its next word (12 rue / 12 high): with the city, one building's key
    "house_key": lambda s: " ".join(fold(s).split()[:2]) if fold(s)[:1].isdigit() else "",
    # an e-mail's local part (the first address of a list): the same person at another domain
    "email_local": lambda s: s.strip().split(" ", 1)[0].partition("@")[0].lower() if "@" in s else "",
}


def _levenshtein_sim(a: str, b: str) -> float:
    return 1.0 - jellyfish.levenshtein_distance(a, b) / max(len(a), len(b))


def _damerau_sim(a: str, b: str) -> float:
    return 1.0 - jellyfish.damerau_levenshtein_distance(a, b) / max(len(a), len(b))


def _tokens_sim(a: str, b: str) -> float:
    """A name whose words are all in the other's (Katsu / Restaurant Katsu) counts 0.9; else the better of
    Jaro-Winkler and the words' Jaccard."""
    ta, tb = set(a.split()), set(b.split())
    if ta and tb and (ta <= tb or tb <= ta):
        return max(0.9, jellyfish.jaro_winkler_similarity(a, b))
    return max(jellyfish.jaro_winkler_similarity(a, b), len(ta & tb) / len(ta | tb) if ta | tb else 0.0)


_HOUSE = re.compile(r"^\s*(\d+)\s*(.*)$")


def _address_sim(a: str, b: str) -> float:
    """Two street addresses: different house numbers are different buildings (0); with the same number the
    rest is compared as words (7th Ave between 54th and 55th / 7th Ave)."""
    ma, mb = _HOUSE.match(a), _HOUSE.match(b)
    if ma and mb:
        if ma.group(1) != mb.group(1):
            return 0.0
        return max(0.8, _tokens_sim(ma.group(2), mb.group(2)))
    if ma or mb:  # one without its number (keyed in short): the streets compared
        return _tokens_sim(ma.group(2) if ma else a, mb.group(2) if mb else b)
    return jellyfish.jaro_winkler_similarity(a, b)


def _name_sim(a: str, b: str) -> float:
    """A person's name part: Jaro-Winkler, and an initial agreeing with the name it abbreviates (J / John) 0.8."""
    if (len(a) == 1 or len(b) == 1) and a[:1] == b[:1]:
        return max(0.8, jellyfish.jaro_winkler_similarity(a, b))
    return jellyfish.jaro_winkler_similarity(a, b)


def _email_sim(a: str, b: str) -> float:
    """Space-separated addresses: one in common 1; one typo between the first addresses (not in a number:
    john58 / john59 are two people as often as one) 0.85; else 0 (the same local part at another domain too:
    namesakes have john.smith at two providers)."""
    la, lb = set(a.split()), set(b.split())
    if la & lb:
        return 1.0
    x, y = a.split()[0], b.split()[0]
    if _DIGITS.sub("", x) == _DIGITS.sub("", y) and jellyfish.damerau_levenshtein_distance(x, y) <= 1:
        return 0.85
    return 0.0


_DIGITS = re.compile(r"\D")


def _date_sim(a: str, b: str) -> float:
    """ISO dates: equal 1; day and month swapped 0.85; one digit mistyped (or two adjacent swapped) 0.8; else 0."""
    if a == b:
        return 1.0
    if len(a) >= 10 and len(b) >= 10 and a[:4] == b[:4] and a[5:7] == b[8:10] and a[8:10] == b[5:7]:
        return 0.85
    return 0.8 if jellyfish.damerau_levenshtein_distance(a, b) <= 1 else 0.0


COMPARATORS: dict[str, Callable[[str, str], float]] = {
    "name": _name_sim,
    "email": _email_sim,
    "date": _date_sim,
    "exact": lambda a, b: 1.0 if a == b else 0.0,
    "any": lambda a, b: 1.0 if set(a.split()) & set(b.split()) else 0.0,  # values_of: the rows share a value
    "jaro_winkler": jellyfish.jaro_winkler_similarity,
    "levenshtein": _levenshtein_sim,
    "damerau_levenshtein": _damerau_sim,
    "tokens": _tokens_sim,
    "address": _address_sim,
}
AGREE = 0.7  # a must_agree field below this similarity vetoes a merge


def compared_values(rows: list[dict], fields: Sequence) -> list[tuple[str, ...]]:
    """Each row's compared values, transformed and capped ('' for an empty field)."""
    transforms = [TRANSFORMS[f.transform] for f in fields]
    return [tuple(fn(capped(r.get(f.field)))[:MAX_COMPARED] if r.get(f.field) not in (None, "") else ""
                  for f, fn in zip(fields, transforms, strict=True)) for r in rows]
