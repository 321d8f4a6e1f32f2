"""The demo CRM as a Salesforce export: Account.csv, Contact.csv, Opportunity.csv in the layout Data
Loader writes (18-character ids, ``IsDeleted`` as the text false/true, ISO timestamps in UTC), with the
same dirt as the demo database. Read by the example config ``config/examples/salesforce_csv``.

    python -m crm_migration.demo_export DIRECTORY [--contacts 1000] [--seed 42]
"""

from __future__ import annotations

import argparse
import csv
import uuid
from datetime import date, datetime
from pathlib import Path

from crm_migration.demo_legacy import COLUMNS, generate

HEADERS = {
    "Account": ("Id", "IsDeleted", "Name", "Type", "Industry", "BillingStreet", "BillingCity", "BillingPostalCode",
                "BillingCountry", "Phone", "Website", "OwnerId", "CreatedDate", "LastModifiedDate"),
    "Contact": ("Id", "IsDeleted", "AccountId", "Salutation", "FirstName", "LastName", "Title", "Phone",
                "MobilePhone", "Email", "MailingCity", "MailingCountry", "LeadSource", "OwnerId", "CreatedDate",
                "LastModifiedDate"),
    "Opportunity": ("Id", "IsDeleted", "AccountId", "ContactId", "Name", "Amount", "CurrencyIsoCode", "StageName",
                    "Probability", "CloseDate", "LeadSource", "OwnerId", "CreatedDate", "LastModifiedDate"),
}
_PREFIX = {"accounts": "001", "contacts": "003", "opportunities": "006"}
OWNER = "005000000000001AAA"


def sf_id(entity: str, legacy_id: str | None) -> str:
    """An 18-character Salesforce-style id, the same for the same legacy id."""
    if not legacy_id:
        return ""
    return (_PREFIX[entity] + uuid.uuid5(uuid.NAMESPACE_OID, f"{entity}:{legacy_id}").hex[:12] + "AAA").upper()[:18]


def _text(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    if isinstance(v, date):
        return v.isoformat()
    return str(v)


def _flag(v: object) -> str:
    return "true" if str(v) not in ("0", "", "None") else "false"


def rows(contacts: int = 1000, seed: int = 42) -> dict[str, list[dict]]:
    data = generate(contacts, seed)
    as_dicts = {t: [dict(zip(COLUMNS[t], r, strict=True)) for r in data[t]] for t in COLUMNS}
    emails = {e["id"]: e["email_address"] for e in as_dicts["email_addresses"] if not e["deleted"]}
    primary = {r["bean_id"]: emails.get(r["email_address_id"]) for r in as_dicts["email_addr_bean_rel"]
               if r["bean_module"] == "Contacts" and r["primary_address"] and not r["deleted"]}
    first_contact: dict[str, str] = {}
    for oc in sorted(as_dicts["opportunities_contacts"], key=lambda r: r["contact_id"] or ""):
        if not oc["deleted"] and oc["contact_id"]:
            first_contact.setdefault(oc["opportunity_id"], oc["contact_id"])
    out = {"Account": [], "Contact": [], "Opportunity": []}
    for a in as_dicts["accounts"]:
        out["Account"].append({
            "Id": sf_id("accounts", a["id"]), "IsDeleted": _flag(a["deleted"]), "Name": a["name"],
            "Type": a["account_type"], "Industry": a["industry"], "BillingStreet": a["billing_address_street"],
            "BillingCity": a["billing_address_city"], "BillingPostalCode": a["billing_address_postalcode"],
            "BillingCountry": a["billing_address_country"], "Phone": a["phone_office"], "Website": a["website"],
            "OwnerId": OWNER, "CreatedDate": a["date_entered"], "LastModifiedDate": a["date_modified"]})
    for c in as_dicts["contacts"]:
        out["Contact"].append({
            "Id": sf_id("contacts", c["id"]), "IsDeleted": _flag(c["deleted"]),
            "AccountId": sf_id("accounts", c["account_id"]), "Salutation": c["salutation"],
            "FirstName": c["first_name"], "LastName": c["last_name"], "Title": c["title"], "Phone": c["phone_work"],
            "MobilePhone": c["phone_mobile"], "Email": primary.get(c["id"]), "MailingCity": c["primary_address_city"],
            "MailingCountry": c["primary_address_country"], "LeadSource": c["lead_source"], "OwnerId": OWNER,
            "CreatedDate": c["date_entered"], "LastModifiedDate": c["date_modified"]})
    for o in as_dicts["opportunities"]:
        out["Opportunity"].append({
            "Id": sf_id("opportunities", o["id"]), "IsDeleted": _flag(o["deleted"]),
            "AccountId": sf_id("accounts", o["account_id"]),
            "ContactId": sf_id("contacts", first_contact.get(o["id"])), "Name": o["name"], "Amount": o["amount"],
            "CurrencyIsoCode": o["currency_id"], "StageName": o["sales_stage"], "Probability": o["probability"],
            "CloseDate": o["date_closed"], "LeadSource": o["lead_source"], "OwnerId": OWNER,
            "CreatedDate": o["date_entered"], "LastModifiedDate": o["date_modified"]})
    return out


def write(directory: Path, tables: dict[str, list[dict]]) -> dict[str, int]:
    directory.mkdir(parents=True, exist_ok=True)
    for name, items in tables.items():
        with (directory / f"{name}.csv").open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(HEADERS[name])
            for r in items:
                w.writerow([_text(r.get(h)) for h in HEADERS[name]])
    return {name: len(items) for name, items in tables.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("directory", type=Path)
    ap.add_argument("--contacts", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    counts = write(args.directory, rows(args.contacts, args.seed))
    print("Salesforce-style export written to", args.directory, counts)


if __name__ == "__main__":
    main()
