"""A labelled set of person records with the defects real CRMs have (benchmark input only, never imported by
the DAGs): people keyed in more than once, with typos, swapped first and last names, a missing or scrambled
name, e-mail typos and unparseable addresses, a day and month swapped or a digit mistyped in the birth date,
missing values everywhere, and namesakes -- different people sharing a common name, told apart only by
their birth date, city or e-mail.

    rows, truth = people(20_000, seed=7)

Rows are legacy contacts as the contacts extract reads them (config/entities/02_contacts.yaml: id,
first_name, last_name, birthdate, primary_address_city, primary_address_postalcode,
primary_address_country, phone_work, email, all_emails, dates); truth holds the sorted pairs of ids that
are one person. Nothing here is tuned to the matcher: each defect has a rate of its own, drawn per copy.
"""

from __future__ import annotations

import random
import uuid
from datetime import date, datetime, timedelta
from itertools import combinations

from faker import Faker

from crm_demo.demo_legacy import _Dirt

LOCALES = {"GB": "en_GB", "US": "en_US", "FR": "fr_FR", "DE": "de_DE", "ES": "es_ES"}
# people who share a name: the commonest names, many times over
NAMESAKES = [("John", "Smith"), ("James", "Walker"), ("Mohammed", "Ali"), ("Sarah", "Smith"), ("David", "Jones"),
             ("Maria", "Garcia"), ("Thomas", "Müller"), ("Marie", "Martin"), ("Emma", "Wilson"), ("Ahmed", "Khan"),
             ("Michael", "Brown"), ("Anna", "Schmidt"), ("Jean", "Dubois"), ("Laura", "Fernández"), ("Lisa", "Taylor")]
NICKNAMES = {"William": "Bill", "Robert": "Bob", "Elizabeth": "Liz", "Margaret": "Peggy", "Richard": "Dick",
             "James": "Jim", "Michael": "Mike", "Thomas": "Tom", "Katherine": "Kate", "Jennifer": "Jen",
             "Christopher": "Chris", "Alexander": "Alex", "Daniel": "Dan", "Matthew": "Matt", "Joseph": "Joe",
             "David": "Dave", "Samuel": "Sam", "Benjamin": "Ben", "Rebecca": "Becky", "Jonathan": "Jon"}
FREE = ["gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "orange.fr", "web.de", "gmx.de", "icloud.com"]


class _Spoil(_Dirt):
    """The demo CRM's typos (a swap, a letter dropped or doubled), and a letter replaced or inserted."""

    def typo(self, s: str) -> str:
        if len(s) < 3 or self.rng.random() < 0.6:
            return super().typo(s) if s else s
        i = self.rng.randrange(1, len(s) - 1)
        letter = self.rng.choice("aeiounrstlmhkd")
        return s[:i] + letter + s[i + 1:] if self.rng.random() < 0.5 else s[:i] + letter + s[i:]

    def scramble(self, s: str) -> str:
        """A name keyed in badly: a nickname, an initial, or two typos."""
        r = self.rng.random()
        if s in NICKNAMES and r < 0.5:
            return NICKNAMES[s]
        if r < 0.7:
            return s[:1] + "."
        return self.typo(self.typo(s))

    def email_typo(self, e: str) -> str:
        local, _, domain = e.partition("@")
        if self.rng.random() < 0.75 or "." not in domain:
            return f"{self.typo(local)}@{domain}"
        return f"{local}@{self.typo(domain.split('.')[0])}.{domain.split('.', 1)[1]}"

    def unparseable(self, e: str) -> str:
        local, _, domain = e.partition("@")
        return self.rng.choice([f"{local}@", f"{local} at {domain}", f"{local}@@{domain}", f"{local}@{domain}.",
                                f"{local}{domain}", f"{local}@{domain} ,"])

    def birthdate(self, d: date) -> date | None:
        r = self.rng.random()
        if r < 0.45 and d.day <= 12 and d.day != d.month:  # day and month swapped (US vs European order)
            return d.replace(day=d.month, month=d.day)
        digits = list(d.strftime("%Y%m%d"))
        for _ in range(20):  # one digit mistyped, still a date
            k = self.rng.choice([2, 3, 5, 6, 7])
            digits2 = list(digits)
            digits2[k] = str(self.rng.randrange(10))
            try:
                out = datetime.strptime("".join(digits2), "%Y%m%d").date()
            except ValueError:
                continue
            if out != d:
                return out
        return None


def _email(rng: random.Random, first: str, last: str, year: int) -> str:
    first_a = "".join(c for c in first.lower() if c.isalpha() and c.isascii()) or "x"
    last_a = "".join(c for c in last.lower() if c.isalpha() and c.isascii()) or "y"
    style = rng.randrange(5)
    local = [f"{first_a}.{last_a}", f"{first_a[0]}{last_a}", f"{first_a}{last_a}{year % 100:02d}",
             f"{last_a}.{first_a}", f"{first_a}_{last_a}{rng.randrange(1, 999)}"][style]
    return f"{local}@{rng.choice(FREE)}"


def people(n: int = 20_000, seed: int = 7) -> tuple[list[dict], set[tuple[str, str]]]:
    """About n legacy contacts (a third of the people keyed in more than once) and the true pairs."""
    rng = random.Random(seed)
    spoil = _Spoil(rng)
    fakers = {c: Faker(loc) for c, loc in LOCALES.items()}
    for i, f in enumerate(fakers.values()):
        f.seed_instance(seed + i)
    rows: list[dict] = []
    truth: set[tuple[str, str]] = set()
    base_time = datetime(2026, 11, 1, 12, 0, 0)
    while len(rows) < n:
        country = rng.choice(list(LOCALES))
        fk = fakers[country]
        if rng.random() < 0.04:
            first, last = rng.choice(NAMESAKES)
        else:
            first, last = fk.first_name(), fk.last_name()
            if rng.random() < 0.06:
                first = rng.choice(list(NICKNAMES))
        born = date(1940, 1, 1) + timedelta(days=rng.randrange(365 * 65))
        city, postcode = fk.city(), fk.postcode()
        person = {
            "first_name": first, "last_name": last,
            "birthdate": born if rng.random() > 0.10 else None,
            "primary_address_city": city if rng.random() > 0.05 else None,
            "primary_address_postalcode": postcode if rng.random() > 0.30 else None,
            "primary_address_country": country,
            "phone_work": fk.phone_number() if rng.random() > 0.50 else None,
            "email": _email(rng, first, last, born.year) if rng.random() > 0.15 else None,
        }
        copies = 1 + (rng.random() < 0.35) + (rng.random() < 0.10)
        ids = []
        for k in range(copies):
            rec = dict(person)
            if k:
                for _ in range(rng.choice((1, 1, 2, 2, 3))):
                    _corrupt(rng, spoil, rec, person, fk)
            lid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            modified = base_time - timedelta(days=rng.randrange(0, 365 * 6), seconds=rng.randrange(86400))
            rows.append({"id": lid, "salutation": None, "title": None, "phone_mobile": None,
                         "lead_source": None, "account_id": None, "assigned_user_id": None, "reports_to_id": None,
                         "deleted": 0, "date_entered": modified - timedelta(days=30), "date_modified": modified,
                         **rec, "birthdate": rec["birthdate"].isoformat() if rec["birthdate"] else None,
                         "all_emails": rec["email"].strip().lower() if rec["email"] and "@" in rec["email"]
                         and rec["email"].count("@") == 1 and " " not in rec["email"].strip() else None})
            ids.append(lid)
        truth |= {tuple(sorted(p)) for p in combinations(ids, 2)}
    return rows, truth


def _corrupt(rng: random.Random, spoil: _Spoil, rec: dict, person: dict, fk: Faker) -> None:  # noqa: C901
    """One defect on a copy of a person, drawn from what CRMs hold."""
    r = rng.random()
    if r < 0.14:
        key = rng.choice(("first_name", "last_name"))
        if rec[key]:
            rec[key] = spoil.typo(rec[key])
    elif r < 0.22:
        rec["first_name"], rec["last_name"] = rec["last_name"], rec["first_name"]
    elif r < 0.28:
        rec["last_name"] = None
    elif r < 0.33:
        rec["first_name"] = None
    elif r < 0.40:
        if rec["first_name"]:
            rec["first_name"] = spoil.scramble(rec["first_name"])
    elif r < 0.44:
        if rec["last_name"]:
            rec["last_name"] = spoil.typo(spoil.typo(rec["last_name"]))
    elif r < 0.54:
        if rec["email"]:
            rec["email"] = spoil.email_typo(rec["email"])
    elif r < 0.60:
        if rec["email"]:
            rec["email"] = spoil.unparseable(rec["email"])
    elif r < 0.66:
        rec["email"] = None
    elif r < 0.70:
        if person["last_name"]:  # a second address (work instead of personal)
            rec["email"] = _email(rng, person["first_name"], person["last_name"], 1900 + rng.randrange(100))
    elif r < 0.78:
        if rec["birthdate"]:
            rec["birthdate"] = spoil.birthdate(rec["birthdate"])
    elif r < 0.83:
        rec["birthdate"] = None
    elif r < 0.88:
        rec["primary_address_city"] = None if rng.random() < 0.6 else spoil.typo(rec["primary_address_city"] or "")
    elif r < 0.92:
        rec["primary_address_postalcode"] = None
    elif r < 0.96:
        rec["phone_work"] = None
    else:
        rec["primary_address_city"], rec["primary_address_postalcode"] = fk.city(), fk.postcode()  # moved
