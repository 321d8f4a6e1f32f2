"""The demo CRM as a Salesforce export: User.csv, Account.csv, Contact.csv, Opportunity.csv, Lead.csv and
Task.csv (calls and tasks; Salesforce keeps meetings as events, notes apart), AccountContactRelation.csv and
OpportunityContactRole.csv (the link objects: a person at several companies, a deal's people by role) in the
layout Data Loader writes (18-character ids, ``IsDeleted`` as the text false/true, ISO timestamps in UTC), with the
same dirt as the demo database. Read by the example config ``config/examples/salesforce_csv``.

    python -m crm_demo.demo_export DIRECTORY [--contacts 1000] [--seed 42]
"""

from __future__ import annotations

import argparse
import csv
import uuid
from datetime import date, datetime
from pathlib import Path

from crm_demo.demo_legacy import COLUMNS, generate

HEADERS = {
    "User": ("Id", "Username", "FirstName", "LastName", "IsActive", "CreatedDate", "LastModifiedDate"),
    "Account": ("Id", "IsDeleted", "Name", "Type", "Industry", "BillingStreet", "BillingCity", "BillingPostalCode",
                "BillingCountry", "Phone", "Website", "OwnerId", "CreatedDate", "LastModifiedDate"),
    "Contact": ("Id", "IsDeleted", "AccountId", "Salutation", "FirstName", "LastName", "Title", "Phone",
                "MobilePhone", "Email", "MailingCity", "MailingCountry", "LeadSource", "OwnerId", "CreatedDate",
                "LastModifiedDate"),
    "Opportunity": ("Id", "IsDeleted", "AccountId", "ContactId", "Name", "Amount", "CurrencyIsoCode", "StageName",
                    "Probability", "CloseDate", "LeadSource", "OwnerId", "CreatedDate", "LastModifiedDate"),
    "Lead": ("Id", "IsDeleted", "FirstName", "LastName", "Company", "Status", "LeadSource", "Phone", "Country",
             "IsConverted", "ConvertedContactId", "ConvertedAccountId", "OwnerId", "CreatedDate", "LastModifiedDate"),
    "Task": ("Id", "IsDeleted", "TaskSubtype", "Subject", "Status", "ActivityDate", "WhoId", "WhatId", "What.Type",
             "OwnerId", "Description", "CreatedDate", "LastModifiedDate"),
    # link objects: a contact at several accounts (IsDirect: the one in Contact.AccountId), a deal's people by role
    "AccountContactRelation": ("Id", "IsDeleted", "ContactId", "AccountId", "IsDirect", "LastModifiedDate"),
    "OpportunityContactRole": ("Id", "IsDeleted", "OpportunityId", "ContactId", "Role", "IsPrimary",
                               "LastModifiedDate"),
}
_PREFIX = {"users": "005", "accounts": "001", "contacts": "003", "opportunities": "006", "leads": "00Q",
           "activities": "00T", "links": "07k"}
OWNER = "005000000000001AAA"  # the admin (SuiteCRM's user '1'): the default owner of the example config
_WHAT = {"Accounts": ("accounts", "Account"), "Opportunities": ("opportunities", "Opportunity")}
_TASK_STATUS = {"Planned": "Not Started", "Held": "Completed", "Not Held": "Deferred"}


def sf_id(entity: str, legacy_id: str | None) -> str:
    """An 18-character Salesforce-style id, the same for the same legacy id."""
    if not legacy_id:
        return ""
    if entity == "users" and legacy_id == "1":
        return OWNER
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
    company: dict[str, str] = {}  # the live link with the smallest account id, as the SQL extract reads it
    for link in (*as_dicts["accounts_contacts"], *as_dicts["accounts_opportunities"]):
        key = link.get("contact_id") or link.get("opportunity_id")
        if not link["deleted"] and (key not in company or link["account_id"] < company[key]):
            company[key] = link["account_id"]
    first_contact: dict[str, str] = {}
    for oc in sorted(as_dicts["opportunities_contacts"], key=lambda r: r["contact_id"] or ""):
        if not oc["deleted"] and oc["contact_id"]:
            first_contact.setdefault(oc["opportunity_id"], oc["contact_id"])
    out = {"User": [], "Account": [], "Contact": [], "Opportunity": [], "Lead": [], "Task": [],
           "AccountContactRelation": [], "OpportunityContactRole": []}
    for link in as_dicts["accounts_contacts"]:
        out["AccountContactRelation"].append({
            "Id": sf_id("links", link["id"]), "IsDeleted": _flag(link["deleted"]),
            "ContactId": sf_id("contacts", link["contact_id"]), "AccountId": sf_id("accounts", link["account_id"]),
            "IsDirect": "true" if company.get(link["contact_id"]) == link["account_id"] else "false",
            "LastModifiedDate": link["date_modified"]})
    for oc in as_dicts["opportunities_contacts"]:
        out["OpportunityContactRole"].append({
            "Id": sf_id("links", oc["id"]), "IsDeleted": _flag(oc["deleted"]),
            "OpportunityId": sf_id("opportunities", oc["opportunity_id"]),
            "ContactId": sf_id("contacts", oc["contact_id"]), "Role": oc["contact_role"],
            "IsPrimary": "true" if first_contact.get(oc["opportunity_id"]) == oc["contact_id"] else "false",
            "LastModifiedDate": oc["date_modified"]})
    for u in as_dicts["users"]:  # Salesforce never deletes a user: it deactivates it
        out["User"].append({
            "Id": sf_id("users", u["id"]), "Username": f"{u['user_name']}@example.com", "FirstName": u["first_name"],
            "LastName": u["last_name"], "IsActive": "true" if u["status"] == "Active" and not u["deleted"] else "false",
            "CreatedDate": u["date_entered"], "LastModifiedDate": u["date_modified"]})
    for a in as_dicts["accounts"]:
        out["Account"].append({
            "Id": sf_id("accounts", a["id"]), "IsDeleted": _flag(a["deleted"]), "Name": a["name"],
            "Type": a["account_type"], "Industry": a["industry"], "BillingStreet": a["billing_address_street"],
            "BillingCity": a["billing_address_city"], "BillingPostalCode": a["billing_address_postalcode"],
            "BillingCountry": a["billing_address_country"], "Phone": a["phone_office"], "Website": a["website"],
            "OwnerId": _owner(a), "CreatedDate": a["date_entered"], "LastModifiedDate": a["date_modified"]})
    for c in as_dicts["contacts"]:
        out["Contact"].append({
            "Id": sf_id("contacts", c["id"]), "IsDeleted": _flag(c["deleted"]),
            "AccountId": sf_id("accounts", company.get(c["id"])), "Salutation": c["salutation"],
            "FirstName": c["first_name"], "LastName": c["last_name"], "Title": c["title"], "Phone": c["phone_work"],
            "MobilePhone": c["phone_mobile"], "Email": primary.get(c["id"]), "MailingCity": c["primary_address_city"],
            "MailingCountry": c["primary_address_country"], "LeadSource": c["lead_source"], "OwnerId": _owner(c),
            "CreatedDate": c["date_entered"], "LastModifiedDate": c["date_modified"]})
    for o in as_dicts["opportunities"]:
        out["Opportunity"].append({
            "Id": sf_id("opportunities", o["id"]), "IsDeleted": _flag(o["deleted"]),
            "AccountId": sf_id("accounts", company.get(o["id"])),
            "ContactId": sf_id("contacts", first_contact.get(o["id"])), "Name": o["name"], "Amount": o["amount"],
            "CurrencyIsoCode": o["currency_id"], "StageName": o["sales_stage"], "Probability": o["probability"],
            "CloseDate": o["date_closed"], "LeadSource": o["lead_source"], "OwnerId": _owner(o),
            "CreatedDate": o["date_entered"], "LastModifiedDate": o["date_modified"]})
    for ld in as_dicts["leads"]:
        out["Lead"].append({
            "Id": sf_id("leads", ld["id"]), "IsDeleted": _flag(ld["deleted"]), "FirstName": ld["first_name"],
            "LastName": ld["last_name"], "Company": ld["account_name"], "Status": ld["status"],
            "LeadSource": ld["lead_source"], "Phone": ld["phone_work"], "Country": ld["primary_address_country"],
            "IsConverted": _flag(ld["converted"]), "ConvertedContactId": sf_id("contacts", ld["contact_id"]),
            "ConvertedAccountId": sf_id("accounts", ld["account_id"]), "OwnerId": _owner(ld),
            "CreatedDate": ld["date_entered"], "LastModifiedDate": ld["date_modified"]})
    for table in ("calls", "tasks"):
        for t in as_dicts[table]:
            what = _WHAT.get(t["parent_type"])
            who = t.get("contact_id") or (t["parent_id"] if t["parent_type"] == "Contacts" else None)
            out["Task"].append({
                "Id": sf_id("activities", t["id"]), "IsDeleted": _flag(t["deleted"]),
                "TaskSubtype": "Call" if table == "calls" else "Task", "Subject": t["name"],
                "Status": _TASK_STATUS.get(t["status"], t["status"]), "ActivityDate": t["date_start"],
                "WhoId": sf_id("contacts", who), "WhatId": sf_id(what[0], t["parent_id"]) if what else "",
                "What.Type": what[1] if what else "", "OwnerId": _owner(t), "Description": t["description"],
                "CreatedDate": t["date_entered"], "LastModifiedDate": t["date_modified"]})
    return out


def _owner(row: dict) -> str:
    return sf_id("users", row["assigned_user_id"])


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
