"""Deterministic demo legacy CRM in the SuiteCRM 7 layout, with realistic dirt.

``build_legacy(url, contacts=1000, seed=42)`` drops and rebuilds the legacy tables
in the database at url. The same seed and size always give the same rows.
Dirt planted, at small rates: duplicates with typos, mojibake, bad e-mails,
phones in many formats, country names in many spellings, orphan foreign keys,
soft-deleted and stale rows, missing required values, unmapped picklist values.
"""

from __future__ import annotations

import argparse
import random
import re
import uuid
from datetime import date, datetime, timedelta

import sqlalchemy as sa
import phonenumbers
from faker import Faker

from crm_migration.model.db import copy_rows, create_database_if_missing, engine, run_ddl, sql_text

LOCALES = {"FR": "fr_FR", "DE": "de_DE", "US": "en_US", "GB": "en_GB", "ES": "es_ES"}
COUNTRY_SPELLINGS = {
    "FR": ["France", "FR", "FRA", "france ", "FRANCE", "Frankreich", "République française"],
    "DE": ["Germany", "DE", "Deutschland", "DEU", "germany", "Allemagne"],
    "US": ["United States", "USA", "US", "U.S.A.", "United States of America", "Etats-Unis"],
    "GB": ["United Kingdom", "UK", "GB", "Great Britain", "England", "Royaume-Uni"],
    "ES": ["Spain", "ES", "España", "Espagne", "ESP"],
}
INDUSTRIES = ["Apparel", "Banking", "Biotechnology", "Chemicals", "Communications", "Construction",
              "Consulting", "Education", "Electronics", "Energy", "Engineering", "Finance", "Healthcare",
              "Insurance", "Manufacturing", "Media", "Retail", "Technology", "Transportation", "Other"]
ACCOUNT_TYPES = ["Analyst", "Competitor", "Customer", "Integrator", "Investor", "Partner", "Press",
                 "Prospect", "Reseller", "Other"]
LEAD_SOURCES = ["Cold Call", "Existing Customer", "Self Generated", "Employee", "Partner", "Public Relations",
                "Direct Mail", "Conference", "Trade Show", "Web Site", "Word of mouth", "Email", "Campaign",
                "Other"]
UNMAPPED_LEAD_SOURCE = "Carrier Pigeon"  # not in any value map: must reach quarantine, named
SALES_STAGES = ["Prospecting", "Qualification", "Needs Analysis", "Value Proposition", "Id. Decision Makers",
                "Perception Analysis", "Proposal/Price Quote", "Negotiation/Review", "Closed Won", "Closed Lost"]
NOW = datetime(2026, 11, 1, 12, 0, 0)


class _Dirt:
    """Seeded helpers that spoil clean values the way legacy CRMs do."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def mojibake(self, s: str) -> str:
        # UTF-8 bytes read as cp1252/latin-1: 'données' -> 'donnÃ©es'
        try:
            return s.encode("utf-8").decode("cp1252")
        except UnicodeDecodeError:
            return s.encode("utf-8").decode("latin-1")

    def typo(self, s: str) -> str:
        if len(s) < 4:
            return s + s[-1:]
        i = self.rng.randrange(1, len(s) - 1)
        op = self.rng.choice(("swap", "drop", "double", "case"))
        if op == "swap":
            return s[:i] + s[i + 1] + s[i] + s[i + 2:]
        if op == "drop":
            return s[:i] + s[i + 1:]
        if op == "double":
            return s[:i] + s[i] + s[i:]
        return s.upper() if self.rng.random() < 0.5 else s.lower()

    def phone(self, raw: str, country: str) -> str:
        """The same number keyed in one of the ways people key numbers in."""
        try:
            num = phonenumbers.parse(raw, country)
        except phonenumbers.NumberParseException:
            return raw
        national = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.NATIONAL)
        nsn = phonenumbers.national_significant_number(num)
        style = self.rng.randrange(7)
        if style == 0:
            return national
        if style == 1:
            return re.sub(r"\D", "", national)
        if style == 2:
            return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
        if style == 3:
            return f"00{num.country_code}{nsn}"
        if style == 4:
            return f" {national} "
        if style == 5:
            digits = re.sub(r"\D", "", national)
            return ".".join(digits[i:i + 2] for i in range(0, len(digits), 2))
        return f"+{num.country_code} (0){nsn}" if country != "US" else f"({nsn[:3]}) {nsn[3:6]}-{nsn[6:]}"

    def email(self, first: str, last: str, domain: str) -> str:
        base = f"{first}.{last}".lower().replace(" ", "")
        r = self.rng.random()
        if r < 0.03:
            return self.rng.choice([f"{base}@", f"{base} at {domain}", f"{base}@@{domain}", f"{base}@{domain}."])
        if r < 0.10:
            return f"  {base.upper()}@{domain.upper()} "
        return f"{base}@{domain}"


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _dates(rng: random.Random, stale: bool) -> tuple[datetime, datetime]:
    if stale:
        modified = NOW - timedelta(days=rng.randrange(365 * 12, 365 * 20))
    else:
        modified = NOW - timedelta(days=rng.randrange(0, 365 * 6), seconds=rng.randrange(86400))
    entered = modified - timedelta(days=rng.randrange(0, 365 * 3))
    return entered, modified


def generate(contacts: int = 1000, seed: int = 42) -> dict[str, list[tuple]]:
    """Rows per legacy table, as tuples in DDL column order, and the planted duplicates (the truth)."""
    rng = random.Random(seed)
    dirt = _Dirt(rng)
    fakers = {c: Faker(loc) for c, loc in LOCALES.items()}
    for i, f in enumerate(fakers.values()):
        f.seed_instance(seed + i)
    n_accounts = max(10, contacts // 4)
    accounts: list[tuple] = []
    planted: dict[str, list[tuple[str, str]]] = {"accounts": [], "contacts": []}  # (duplicate id, original id)
    domains: dict[str, str] = {}
    for _ in range(n_accounts):
        country = rng.choice(list(LOCALES))
        fk = fakers[country]
        acc_id = _uuid(rng)
        name = fk.company()
        if rng.random() < 0.04:
            name = dirt.mojibake(name + (" Société" if country == "FR" else " Müller"))
        if rng.random() < 0.01:
            name = rng.choice([None, "", "   "])
        stale = rng.random() < 0.03
        entered, modified = _dates(rng, stale)
        domain = fk.domain_name()
        domains[acc_id] = domain
        city = fk.city()
        if rng.random() < 0.03:
            city = dirt.mojibake(city + "é")
        row = (acc_id, name, rng.choice(ACCOUNT_TYPES), rng.choice(INDUSTRIES), fk.street_address(), city,
               fk.postcode(), rng.choice(COUNTRY_SPELLINGS[country]), dirt.phone(fk.phone_number(), country),
               rng.choice([f"www.{domain}", f"https://{domain}/", domain, None]), entered, modified,
               1 if rng.random() < 0.02 else 0)
        accounts.append(row)
        if name and name.strip() and rng.random() < 0.08:  # a duplicate keyed in again later, with a typo
            _, m2 = _dates(rng, False)
            dup_id = _uuid(rng)
            planted["accounts"].append((dup_id, acc_id))
            accounts.append((dup_id, dirt.typo(name), row[2], row[3], row[4], row[5], row[6],
                             rng.choice(COUNTRY_SPELLINGS[country]), dirt.phone(fk.phone_number(), country),
                             row[9], row[10], m2, 0))
    account_ids = [a[0] for a in accounts]
    account_country = {a[0]: next(c for c, sp in COUNTRY_SPELLINGS.items() if a[7] in sp) for a in accounts}

    contact_rows: list[tuple] = []
    emails: list[tuple] = []
    rels: list[tuple] = []

    def add_email(bean_id: str, address: str | None) -> None:
        if address is None:
            return
        eid = _uuid(rng)
        emails.append((eid, address, address.upper(), 0, 0, 0))
        rels.append((_uuid(rng), eid, bean_id, "Contacts", 1, 0))

    while len(contact_rows) < contacts:
        acc = rng.choice(account_ids)
        country = account_country[acc]
        fk = fakers[country]
        cid = _uuid(rng)
        first, last = fk.first_name(), fk.last_name()
        if rng.random() < 0.03:
            first, last = dirt.mojibake(first), dirt.mojibake(last)
        if rng.random() < 0.01:
            last = None
        account_id = acc if rng.random() > 0.02 else _uuid(rng)  # orphan FK
        if rng.random() < 0.05:
            account_id = None
        lead_source = rng.choice(LEAD_SOURCES) if rng.random() > 0.005 else UNMAPPED_LEAD_SOURCE
        stale = rng.random() < 0.03
        entered, modified = _dates(rng, stale)
        email = dirt.email(first or "x", last or "y", domains.get(acc, fk.free_email_domain()))
        row = (cid, rng.choice(["Mr.", "Ms.", "Mrs.", "Dr.", "Prof.", None]), f"  {first}" if rng.random() < 0.05
               else first, last, fk.job()[:100], dirt.phone(fk.phone_number(), country),
               dirt.phone(fk.phone_number(), country) if rng.random() < 0.6 else None, fk.city(),
               rng.choice(COUNTRY_SPELLINGS[country]), lead_source, account_id, entered, modified,
               1 if rng.random() < 0.02 else 0)
        contact_rows.append(row)
        add_email(cid, email if rng.random() > 0.05 else None)
        if last and rng.random() < 0.08 and len(contact_rows) < contacts:  # duplicate person
            did = _uuid(rng)
            planted["contacts"].append((did, cid))
            _, m2 = _dates(rng, False)
            dup_first = dirt.typo(first) if rng.random() < 0.5 else first
            dup_last = dirt.typo(last) if rng.random() < 0.5 else last
            contact_rows.append((did, row[1], dup_first, dup_last, row[4], dirt.phone(fk.phone_number(), country),
                                 row[6], row[7], rng.choice(COUNTRY_SPELLINGS[country]), row[9], row[10],
                                 row[11], m2, 0))
            add_email(did, email.strip().lower() if rng.random() < 0.7 else None)

    leads = []
    for _ in range(contacts // 2):
        country = rng.choice(list(LOCALES))
        fk = fakers[country]
        entered, modified = _dates(rng, rng.random() < 0.2)
        leads.append((_uuid(rng), fk.first_name(), fk.last_name(), fk.company(),
                      rng.choice(["New", "Assigned", "In Process", "Converted", "Recycled", "Dead"]),
                      rng.choice(LEAD_SOURCES), dirt.phone(fk.phone_number(), country),
                      rng.choice(COUNTRY_SPELLINGS[country]), 1 if rng.random() < 0.1 else 0, entered, modified,
                      1 if rng.random() < 0.02 else 0))
    opportunities = []
    for _ in range(contacts // 4):
        entered, modified = _dates(rng, rng.random() < 0.05)
        opportunities.append((_uuid(rng), fakers["US"].bs()[:50], round(rng.uniform(500, 250000), 2), "-99",
                              rng.choice(SALES_STAGES), rng.choice([10, 20, 25, 30, 50, 65, 80, 90, 100, 0]),
                              (modified + timedelta(days=rng.randrange(10, 200))).date(),
                              rng.choice(LEAD_SOURCES), rng.choice(account_ids) if rng.random() > 0.02
                              else _uuid(rng), entered, modified, 1 if rng.random() < 0.02 else 0))
    contacts_of: dict[str, list[str]] = {}
    for c in contact_rows:
        if c[10]:
            contacts_of.setdefault(c[10], []).append(c[0])
    opp_contacts = []
    for o in opportunities:  # SugarCRM links opportunities to contacts through opportunities_contacts
        people = contacts_of.get(o[8])
        if people and rng.random() < 0.8:
            opp_contacts.append((_uuid(rng), rng.choice(people), o[0], "Primary Decision Maker", 0))
    users, owner = _owners(contacts, seed)  # a separate generator: the rows above stay what they were
    data = {
        "users": users, "accounts": [(*r, owner()) for r in accounts],
        "contacts": [(*r, owner()) for r in contact_rows],
        "leads": [(*r, owner()) for r in leads], "opportunities": [(*r, owner()) for r in opportunities],
        "opportunities_contacts": opp_contacts, "email_addresses": emails, "email_addr_bean_rel": rels,
        "planted_duplicates": planted,
    }
    _suitecrm_links(data, seed)
    _activities(data, contacts, seed, owner)
    return data


def _hierarchies(data: dict, seed: int) -> None:
    """SuiteCRM's hierarchies (their own generator): an account's parent organisation (accounts.parent_id)
    and the person a contact reports to (contacts.reports_to_id), now and then one that is gone, and one
    pair of accounts each the other's parent (a cycle, as a hand-edited CRM has)."""
    rng = random.Random(seed + 4_000)
    account_ids = [a[0] for a in data["accounts"]]
    parents = {a: (rng.choice(account_ids) if rng.random() < 0.1 else None) for a in account_ids}
    if len(account_ids) > 3:
        parents[account_ids[1]], parents[account_ids[2]] = account_ids[2], account_ids[1]
    data["accounts"] = [(*a, parents[a[0]] if parents[a[0]] != a[0] else None) for a in data["accounts"]]
    contact_ids = [c[0] for c in data["contacts"]]
    data["contacts"] = [(*c, (rng.choice(contact_ids) if rng.random() < 0.97 else _uuid(rng))
                         if rng.random() < 0.15 else None) for c in data["contacts"]]


def _birthdates(data: dict, seed: int) -> None:
    """A contact's birth date and postcode (SuiteCRM's contacts.birthdate, primary_address_postalcode), from a
    generator of their own (the rest of the demo CRM stays what it was): most people have one; a duplicate
    keyed in again has its original's, now and then with the day and month swapped or left empty."""
    rng = random.Random(seed + 5_000)
    born, postcode = {}, {}
    for c in data["contacts"]:
        born[c[0]] = (date(1945, 1, 1) + timedelta(days=rng.randrange(365 * 60))) if rng.random() < 0.8 else None
        postcode[c[0]] = f"{rng.randrange(1000, 99999):05d}" if rng.random() < 0.7 else None
    for dup, original in data["planted_duplicates"]["contacts"]:
        b, r = born[original], rng.random()
        born[dup] = None if r < 0.1 else b.replace(day=b.month, month=b.day) if b and r < 0.15 and b.day <= 12 else b
        postcode[dup] = postcode[original] if rng.random() < 0.8 else None
    data["contacts"] = [(*c, born[c[0]], postcode[c[0]]) for c in data["contacts"]]


def _many_to_many(data: dict, seed: int) -> None:
    """What makes SuiteCRM's link tables many-to-many (its own generator: the rows before stay as they were):
    now and then a person works for a second company or has a second e-mail address (a few of them flagged
    primary as well), and a deal has a second person with another role."""
    rng = random.Random(seed + 3_000)
    account_ids = [a[0] for a in data["accounts"]]
    modified = {c[0]: c[11] for c in data["contacts"]}
    for _, contact_id, account_id, _, deleted in list(data["accounts_contacts"]):
        if not deleted and rng.random() < 0.06:
            other = rng.choice(account_ids)
            if other != account_id:
                data["accounts_contacts"].append((_uuid(rng), contact_id, other, modified[contact_id], 0))
    for c in data["contacts"]:  # a second (now and then a third) address, once in a while flagged primary too
        for k in range(rng.choice((1, 1, 1, 2)) if rng.random() < 0.12 else 0):
            # the person's own: two namesakes never share one (their ids tell them apart, no draw added)
            local = "".join(ch for ch in f"{c[2] or ''}.{c[3] or ''}".lower() if ch.isalnum() or ch == ".")
            address = (f"{local.strip('.') or 'contact'}.{c[0][:6]}{k or ''}"
                       f"@{rng.choice(('work.example', 'mail.example'))}")
            eid = _uuid(rng)
            data["email_addresses"].append((eid, address, address.upper(), 0, 0, 0))
            data["email_addr_bean_rel"].append((_uuid(rng), eid, c[0], "Contacts", 1 if rng.random() < 0.05 else 0, 0))
    people = [c[0] for c in data["contacts"]]
    for _, _, opportunity_id, _, at, _ in list(data["opportunities_contacts"]):
        if rng.random() < 0.2:
            data["opportunities_contacts"].append((_uuid(rng), rng.choice(people), opportunity_id,
                                                   rng.choice(("Technical Evaluator", "Business User", "Influencer")),
                                                   at, 0))


def _suitecrm_links(data: dict, seed: int) -> None:
    """SuiteCRM keeps a contact's and an opportunity's company in link tables, not in a column: move the
    generated account_id into accounts_contacts / accounts_opportunities (with, now and then, an old link
    soft-deleted when the person changed company), date opportunities_contacts, and point converted leads
    to the contact they became (sometimes to one since purged)."""
    rng = random.Random(seed + 2_000)
    account_ids = [a[0] for a in data["accounts"]]

    def linked(rows: list[tuple], at: int, table: str) -> list[tuple]:
        links, out = [], []
        for r in rows:
            modified = r[at + 2]
            if r[at] is not None:
                links.append((_uuid(rng), r[0], r[at], modified, 0))
            if rng.random() < 0.03:  # a company the record left: the link is soft-deleted, never read
                links.append((_uuid(rng), r[0], rng.choice(account_ids), modified - timedelta(days=400), 1))
            out.append(r[:at] + r[at + 1:])
        data[table] = links
        return out

    contact_ids = [c[0] for c in data["contacts"] if not c[13]]
    data["contacts"] = linked(data["contacts"], 10, "accounts_contacts")
    modified = {o[0]: o[10] for o in data["opportunities"]}
    data["opportunities"] = linked(data["opportunities"], 8, "accounts_opportunities")
    data["opportunities_contacts"] = [(*oc[:4], modified[oc[2]], oc[4]) for oc in data["opportunities_contacts"]]
    _many_to_many(data, seed)
    _hierarchies(data, seed)
    _birthdates(data, seed)
    leads = []
    for r in data["leads"]:
        contact = account = None
        if r[8]:  # converted
            contact = rng.choice(contact_ids) if rng.random() > 0.05 else _uuid(rng)
            account = rng.choice(account_ids)
        leads.append((*r[:9], contact, account, None, *r[9:]))
    data["leads"] = leads


ACTIVITY_SUBJECTS = ["Follow-up call", "Quarterly review", "Send quote", "Demo of the new range", "Contract renewal",
                     "Intro meeting", "Complaint about delivery", "Price negotiation", "Onboarding", "Réunion annuelle"]
ACTIVITY_STATUS = {"calls": ["Planned", "Held", "Not Held"], "meetings": ["Planned", "Held", "Not Held"],
                   "tasks": ["Not Started", "In Progress", "Completed", "Pending Input", "Deferred"]}


def _activities(data: dict, contacts: int, seed: int, owner) -> None:  # noqa: ANN001
    """Calls, meetings, notes and tasks, each on a parent of any type (parent_type / parent_id), with the
    dirt of real ones: parents of a module not migrated (Cases), parents long gone, no subject, a status
    no map knows, mojibake."""
    rng = random.Random(seed + 3_000)
    dirt = _Dirt(rng)
    parents = {"Accounts": [r[0] for r in data["accounts"]], "Contacts": [r[0] for r in data["contacts"]],
               "Opportunities": [r[0] for r in data["opportunities"]], "Leads": [r[0] for r in data["leads"]]}
    out: dict[str, list[tuple]] = {"calls": [], "meetings": [], "notes": [], "tasks": []}
    for _ in range(contacts):
        table = rng.choices(list(out), weights=(35, 20, 25, 20))[0]
        r = rng.random()
        ptype = ("Accounts" if r < 0.35 else "Contacts" if r < 0.70 else "Opportunities" if r < 0.85
                 else "Leads" if r < 0.95 else "Cases" if r < 0.98 else None)
        if ptype is None:
            pid = None
        elif ptype == "Cases" or rng.random() < 0.02:  # a module not migrated, or a parent purged long ago
            pid = _uuid(rng)
        else:
            pid = rng.choice(parents[ptype])
        subject = rng.choice(ACTIVITY_SUBJECTS)
        if rng.random() < 0.03:
            subject = dirt.mojibake(subject)
        if rng.random() < 0.01:
            subject = rng.choice([None, "  "])
        entered, modified = _dates(rng, rng.random() < 0.03)
        start = modified + timedelta(days=rng.randrange(-30, 30), hours=rng.randrange(8, 18))
        status = rng.choice(ACTIVITY_STATUS[table]) if table in ACTIVITY_STATUS else None
        if status and rng.random() < 0.005:
            status = "Postponed"  # in no value map: quarantined, named
        deleted = 1 if rng.random() < 0.02 else 0
        head = (_uuid(rng), subject, entered, modified, owner(), deleted)
        contact = rng.choice(parents["Contacts"]) if rng.random() < 0.3 else None
        note = "Spoke about " + subject.lower() if subject and subject.strip() else None
        if table == "calls":
            out[table].append((*head, 0, 15, start, start + timedelta(minutes=15), ptype, status,
                               rng.choice(["Inbound", "Outbound"]), pid, note))
        elif table == "meetings":
            out[table].append((*head, rng.choice(["Office", "Online", None]), 1, 0, start, start + timedelta(hours=1),
                               ptype, status, pid, note))
        elif table == "notes":
            out[table].append((*head, ptype, pid, contact, note))
        else:
            out[table].append((*head, status, start + timedelta(days=7), start, ptype, pid, contact,
                               rng.choice(["High", "Medium", "Low"]), note))
    data.update(out)


def _owners(contacts: int, seed: int):
    """SuiteCRM users (id '1' is the admin) and an assigned_user_id picker: mostly a real user, some
    empty, some pointing to users deleted from the users table long ago."""
    rng = random.Random(seed + 1_000)
    fk = Faker("en_US")
    fk.seed_instance(seed + 1_000)
    users = [("1", "admin", "System", "Administrator", "Active", datetime(2012, 1, 1), datetime(2012, 1, 1), 0)]
    for i in range(max(4, contacts // 250)):
        first, last = fk.first_name(), fk.last_name()
        entered, modified = _dates(rng, False)
        users.append((_uuid(rng), f"{first[0]}{last}".lower()[:60], first, last,
                      "Inactive" if rng.random() < 0.1 else "Active", entered, modified, 1 if i % 9 == 8 else 0))
    ids = [u[0] for u in users if not u[7]]

    def owner() -> str | None:
        r = rng.random()
        return None if r < 0.04 else f"gone-user-{rng.randrange(5)}" if r < 0.08 else rng.choice(ids)

    return users, owner


COLUMNS = {
    "users": ("id", "user_name", "first_name", "last_name", "status", "date_entered", "date_modified", "deleted"),
    "accounts": ("id", "name", "account_type", "industry", "billing_address_street", "billing_address_city",
                 "billing_address_postalcode", "billing_address_country", "phone_office", "website",
                 "date_entered", "date_modified", "deleted", "assigned_user_id", "parent_id"),
    "contacts": ("id", "salutation", "first_name", "last_name", "title", "phone_work", "phone_mobile",
                 "primary_address_city", "primary_address_country", "lead_source", "date_entered",
                 "date_modified", "deleted", "assigned_user_id", "reports_to_id", "birthdate",
                 "primary_address_postalcode"),
    "leads": ("id", "first_name", "last_name", "account_name", "status", "lead_source", "phone_work",
              "primary_address_country", "converted", "contact_id", "account_id", "opportunity_id", "date_entered",
              "date_modified", "deleted", "assigned_user_id"),
    "opportunities": ("id", "name", "amount", "currency_id", "sales_stage", "probability", "date_closed",
                      "lead_source", "date_entered", "date_modified", "deleted", "assigned_user_id"),
    "opportunities_contacts": ("id", "contact_id", "opportunity_id", "contact_role", "date_modified", "deleted"),
    "accounts_contacts": ("id", "contact_id", "account_id", "date_modified", "deleted"),
    "accounts_opportunities": ("id", "opportunity_id", "account_id", "date_modified", "deleted"),
    "email_addresses": ("id", "email_address", "email_address_caps", "invalid_email", "opt_out", "deleted"),
    "email_addr_bean_rel": ("id", "email_address_id", "bean_id", "bean_module", "primary_address", "deleted"),
    "calls": ("id", "name", "date_entered", "date_modified", "assigned_user_id", "deleted", "duration_hours",
              "duration_minutes", "date_start", "date_end", "parent_type", "status", "direction", "parent_id",
              "description"),
    "meetings": ("id", "name", "date_entered", "date_modified", "assigned_user_id", "deleted", "location",
                 "duration_hours", "duration_minutes", "date_start", "date_end", "parent_type", "status", "parent_id",
                 "description"),
    "notes": ("id", "name", "date_entered", "date_modified", "assigned_user_id", "deleted", "parent_type",
              "parent_id", "contact_id", "description"),
    "tasks": ("id", "name", "date_entered", "date_modified", "assigned_user_id", "deleted", "status", "date_due",
              "date_start", "parent_type", "parent_id", "contact_id", "priority", "description"),
}


def _create_mysql_database(url: str) -> None:
    u = sa.engine.make_url(url)
    admin = sa.create_engine(u.set(database="mysql"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE IF NOT EXISTS `{u.database}` CHARACTER SET utf8mb4")
    admin.dispose()


def build_legacy(url: str, contacts: int = 1000, seed: int = 42) -> dict[str, int]:
    """Drop and rebuild the demo legacy CRM in the database at url (PostgreSQL, or MySQL/MariaDB as
    SuiteCRM runs on); returns rows per table."""
    mysql = sa.engine.make_url(url).get_backend_name() in ("mysql", "mariadb")
    if mysql:
        _create_mysql_database(url)
    else:
        create_database_if_missing(url)
    data = generate(contacts, seed)
    with engine(url).begin() as conn:
        for table in COLUMNS:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        if mysql:  # SuiteCRM's MySQL types; one statement per call
            ddl = "\n".join(ln for ln in sql_text("ddl/create_legacy.sql").splitlines()
                            if not ln.strip().startswith("--"))
            for stmt in filter(str.strip, re.sub(r"\btimestamp\b", "datetime", ddl).split(";")):
                conn.exec_driver_sql(stmt)
            counts = {}
            for t in COLUMNS:
                cols = COLUMNS[t]
                rows = [tuple(r) for r in data[t]]
                if rows:
                    marks = ", ".join(["%s"] * len(cols))
                    conn.exec_driver_sql(f"INSERT INTO {t} ({', '.join(cols)}) VALUES ({marks})", rows)
                counts[t] = len(rows)
        else:
            run_ddl(conn, "ddl/create_legacy.sql")
            counts = {t: copy_rows(conn, t, COLUMNS[t], data[t]) for t in COLUMNS}
    with engine(url).begin() as conn:  # a live legacy database has statistics; a freshly copied one has none
        for table in COLUMNS:
            conn.exec_driver_sql(f"ANALYZE {'TABLE ' if mysql else ''}{table}")
    return counts


def main() -> None:
    from crm_migration.model.db import connection_url

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contacts", type=int, default=1000, help="number of legacy contacts (accounts = 1/4)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--conn-id", default="crm_legacy", help="Airflow connection id of the legacy database")
    args = ap.parse_args()
    counts = build_legacy(connection_url(args.conn_id), args.contacts, args.seed)
    print("legacy CRM built:", ", ".join(f"{t}={n}" for t, n in counts.items()))


if __name__ == "__main__":
    main()
