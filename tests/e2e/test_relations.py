"""Many-to-many relations as SuiteCRM keeps them (accounts_contacts, opportunities_contacts with a role):
every live legacy link in the target's link table, counted by SQL on both databases; links deleted in
the legacy CRM leave the target with the delta, links added arrive."""

from __future__ import annotations

import sqlalchemy as sa
from conftest import legacy_copy, migrated_target
from helpers import report_of, run_delta, T1, T2, target_of, task_states

from crm_migration.model.db import engine
from crm_migration.rules.cleanse import clean_email


def _all(url: str, sql: str, **p) -> list[tuple]:
    with engine(url).connect() as conn:
        return conn.execute(sa.text(sql), p).all()


def _expected(legacy: str, url: str, link_table: str, key: str, value: str, key_of: dict, value_of: dict) -> set:
    """The target pairs the live legacy links stand for, where both ends are active target rows."""
    rows = _all(legacy, f"SELECT {key}, {value} FROM {link_table} WHERE deleted = 0")
    return {(key_of[k], value_of[v]) for k, v in rows if k in key_of and v in value_of}


def test_every_live_link_kept_and_the_delta_follows_deletions(dagbag, target_url, monkeypatch):
    uri, legacy = legacy_copy("crm_test_legacy_relations")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    migrated_target(dagbag, "accounts", "contacts", "opportunities")
    people, companies = target_of(target_url, "people", "contacts"), target_of(target_url, "companies", "accounts")
    deals = target_of(target_url, "opportunities", "opportunities")

    want = _expected(legacy, target_url, "accounts_contacts", "contact_id", "account_id", people, companies)
    have = set(_all(target_url, "SELECT person_id::text, company_id::text FROM crm.company_people"))
    assert want and have == want, (len(want - have), len(have - want))
    # a person with two live companies keeps both (the single company_id column keeps one of them)
    two = _all(legacy, "SELECT contact_id FROM accounts_contacts WHERE deleted = 0 GROUP BY contact_id"
                       " HAVING count(DISTINCT account_id) = 2 ORDER BY contact_id")
    both = [c for (c,) in two if c in people and all(
        a in companies for (a,) in _all(legacy, "SELECT account_id FROM accounts_contacts WHERE contact_id = :c"
                                                " AND deleted = 0", c=c))]
    assert both, "the demo has people working for two companies"
    assert _all(target_url, "SELECT count(*) FROM crm.company_people WHERE person_id = CAST(:p AS uuid)",
                p=people[both[0]])[0][0] == 2

    # every e-mail of a person (SuiteCRM: email_addr_bean_rel + email_addresses), the primary one flagged
    # (the relation's kind: email normalises them as the people's e-mail column is; one the rule rejects is
    # kept as written)
    emails = {(people[c], clean_email(e)[0] or e) for c, e in _all(
        legacy, "SELECT r.bean_id, lower(trim(e.email_address)) FROM email_addr_bean_rel r JOIN email_addresses e"
                " ON e.id = r.email_address_id WHERE r.bean_module = 'Contacts' AND r.deleted = 0 AND e.deleted = 0"
                " AND e.email_address IS NOT NULL") if c in people}
    kept = _all(target_url, "SELECT person_id::text, email, is_primary FROM crm.person_emails")
    assert {(p, e) for p, e, _ in kept} == emails
    several = [p for p in {p for p, _, _ in kept} if sum(1 for q, _, _ in kept if q == p) > 1]
    assert len(several) > 10 and any(primary for _, _, primary in kept)
    # every phone (SuiteCRM's phone columns), the work phone flagged primary, in E.164 where it parses
    phones = _all(legacy, "SELECT id, phone_work, phone_mobile FROM contacts WHERE deleted = 0")
    held_phones = _all(target_url, "SELECT person_id::text, phone, is_primary FROM crm.person_phones")
    want_phones = {(people[c], n) for c, *ns in phones if c in people for n in ns if n and n.strip()}
    assert len({(p, n) for p, n, _ in held_phones}) == len(held_phones) >= len(want_phones) * 0.9
    assert {p for p, _, _ in held_phones} == {p for p, _ in want_phones}
    # the same rule as the people's phone columns (the row's country): the primary is the work phone
    columns = _all(target_url, "SELECT id::text, phone, mobile FROM crm.people WHERE phone IS NOT NULL"
                               " OR mobile IS NOT NULL")
    alone = set(_unmerged(target_url, "people", "contacts").values())  # a merged one has every member's phones
    assert {(p, n) for p, n, primary in held_phones if primary and p in alone} == {
        (p, w) for p, w, _ in columns if w and p in alone}
    assert {(p, n) for p, n, _ in held_phones} >= {(p, m) for p, _, m in columns if m and p in alone}

    roles = _expected(legacy, target_url, "opportunities_contacts", "opportunity_id", "contact_id", deals, people)
    held = _all(target_url, "SELECT opportunity_id::text, person_id::text, role FROM crm.opportunity_people")
    assert {(o, p) for o, p, _ in held} == roles and len(roles) > len(deals) * 0.5
    legacy_roles = {(deals[o], people[c]): r for o, c, r in _all(
        legacy, "SELECT opportunity_id, contact_id, contact_role FROM opportunities_contacts WHERE deleted = 0")
        if o in deals and c in people}
    assert all(legacy_roles[(o, p)] == r for o, p, r in held if (o, p) in legacy_roles)
    assert len({r for _, _, r in held}) >= 3, "roles kept, not flattened"

    # in the legacy CRM: a link removed outright, one soft-deleted, one added; the people themselves unchanged
    gone, soft = both[0], both[1]
    added = next(c for c in sorted(people) if c not in {gone, soft})
    account = next(a for a in sorted(companies) if (people[added], companies[a]) not in have)
    with engine(legacy).begin() as conn:
        conn.execute(sa.text("DELETE FROM accounts_contacts WHERE id = (SELECT min(id) FROM accounts_contacts"
                             " WHERE contact_id = :c AND deleted = 0)"), {"c": gone})
        conn.execute(sa.text("UPDATE accounts_contacts SET deleted = 1 WHERE id = (SELECT min(id) FROM"
                             " accounts_contacts WHERE contact_id = :c AND deleted = 0)"), {"c": soft})
        conn.execute(sa.text("INSERT INTO accounts_contacts (id, contact_id, account_id, date_modified, deleted)"
                             " VALUES ('link-added', :c, :a, now(), 0)"), {"c": added, "a": account})
        # a person's only company link deleted outright (no date left behind): their company goes too
        (unlinked,) = conn.execute(sa.text(
            "SELECT l.contact_id FROM accounts_contacts l WHERE l.deleted = 0 AND l.contact_id <> ALL(:skip)"
            " GROUP BY 1 HAVING count(*) = 1 ORDER BY 1 LIMIT 1"), {"skip": [gone, soft, added]}).one()
        conn.execute(sa.text("DELETE FROM accounts_contacts WHERE contact_id = :c"), {"c": unlinked})
        # a company closed (soft-deleted, its date moved): its people's single company link is dead, though
        # neither their rows nor their link rows changed (through.parent_deleted)
        ((orphan, closed),) = conn.execute(sa.text(
            "SELECT l.contact_id, min(l.account_id) FROM accounts_contacts l JOIN contacts c ON c.id = l.contact_id"
            " AND c.deleted = 0 WHERE l.deleted = 0 AND l.contact_id <> ALL(:skip) GROUP BY l.contact_id"
            " HAVING count(*) = 1 ORDER BY 1 LIMIT 1"), {"skip": [gone, soft, added, unlinked]}).all()
        conn.execute(sa.text("UPDATE accounts SET deleted = 1, date_modified = now() WHERE id = :a"), {"a": closed})
    engine(legacy).dispose()
    assert _all(target_url, "SELECT company_id IS NOT NULL FROM crm.people WHERE legacy_id = :c", c=orphan)[0][0]
    dr = run_delta(dagbag, T1, entities=["accounts", "contacts"])
    assert str(dr.state) == "success", task_states(dr)
    assert _all(target_url, "SELECT company_id FROM crm.people WHERE legacy_id = :c", c=orphan)[0][0] is None
    assert _all(target_url, "SELECT company_id FROM crm.people WHERE legacy_id = :c", c=unlinked)[0][0] is None
    # every unmerged person's single company is the one the legacy links pick now (the smallest live one)
    mine = _unmerged(target_url, "people", "contacts")
    companies = target_of(target_url, "companies", "accounts")
    pick = dict(_all(legacy, "SELECT l.contact_id, min(l.account_id) FROM accounts_contacts l JOIN accounts a"
                             " ON a.id = l.account_id AND a.deleted = 0 WHERE l.deleted = 0 GROUP BY 1"))
    held = dict(_all(target_url, "SELECT legacy_id, company_id::text FROM crm.people WHERE deleted_at IS NULL"))
    wrong = {c for c in mine if pick.get(c) in companies and held[c] != companies[pick[c]]}
    wrong |= {c for c in mine if c not in pick and held[c] is not None}
    assert not wrong, sorted(wrong)[:5]
    people, companies = target_of(target_url, "people", "contacts"), target_of(target_url, "companies", "accounts")
    want = _expected(legacy, target_url, "accounts_contacts", "contact_id", "account_id", people, companies)
    have = set(_all(target_url, "SELECT person_id::text, company_id::text FROM crm.company_people"))
    assert have == want, (len(want - have), len(have - want))
    assert _all(target_url, "SELECT count(*) FROM crm.company_people WHERE person_id = CAST(:p AS uuid)",
                p=people[gone])[0][0] == 1
    assert (people[added], companies[account]) in have
    # what the load's gate recorded: every live link accounted for, nothing lost
    checks = dict(_all(target_url, "SELECT check_name, value FROM crm_migration.gate_result WHERE stage = 'relations'"
                                   " AND entity = 'contacts' AND run_id = :r", r=dr.run_id))
    assert checks["relation contacts.companies: lost"] == 0
    assert checks["relation contacts.companies: legacy_links"] == (
        checks["relation contacts.companies: linked"] + checks["relation contacts.companies: end_missing"])
    # issue 41: the delta synced and checked the links of the rows it touched, not every link of the CRM (the
    # target link table, compared whole above, shows nothing was missed)
    live = _all(legacy, "SELECT count(*) FROM accounts_contacts WHERE deleted = 0")[0][0]
    assert 0 < checks["relation contacts.companies: legacy_links"] < live / 2

    # the freeze counts the links too: every live legacy link between active rows is in the target
    dr = run_delta(dagbag, T2, entities=["accounts", "contacts"], freeze=True)
    freeze = report_of(target_url, "freeze", dr.run_id)["entities"]["contacts"]
    companies_links = freeze["relations"]["contacts.companies"]
    assert companies_links["legacy_links"] == companies_links["linked"] + companies_links["end_missing"] > 0
    assert freeze["counts"]["links_lost"] == freeze["counts"]["links_unexpected"] == 0


def _unmerged(url: str, table: str, entity: str) -> dict[str, str]:
    """legacy id -> target id of the rows that are their own record (no merge on either side)."""
    return dict(_all(url, f"SELECT t.legacy_id, t.id::text FROM crm.{table} t WHERE t.deleted_at IS NULL AND NOT"
                          " EXISTS (SELECT 1 FROM crm_migration.merged m WHERE m.entity = :e AND (m.new_id = t.id"
                          " OR m.legacy_id = t.legacy_id))", e=entity))


def test_hierarchies_within_a_lot_and_through_the_delta(dagbag, target_url, monkeypatch):
    """accounts.parent_id and contacts.reports_to_id point at rows of the same entity, most of them loaded
    in the same run as the row itself: each resolves once the lot's rows are in, by SQL on both databases."""
    uri, legacy = legacy_copy("crm_test_legacy_hierarchy")
    monkeypatch.setenv("AIRFLOW_CONN_CRM_LEGACY", uri)
    migrated_target(dagbag, "accounts", "contacts")
    for table, entity, legacy_table, column, target_column in (
            ("companies", "accounts", "accounts", "parent_id", "parent_company_id"),
            ("people", "contacts", "contacts", "reports_to_id", "reports_to_id")):
        mine, anyone = _unmerged(target_url, table, entity), target_of(target_url, table, entity)
        legacy_parent = dict(_all(legacy, f"SELECT id, {column} FROM {legacy_table} WHERE deleted = 0"))
        held = dict(_all(target_url, f"SELECT legacy_id, {target_column}::text FROM crm.{table}"))
        cut = {lid for (lid,) in _all(target_url, "SELECT legacy_id FROM crm_migration.link_cut WHERE entity = :e",
                                      e=entity)}  # a cycle's cut member: below
        checked = [lid for lid in mine if legacy_parent.get(lid) in anyone and lid not in cut]
        assert len(checked) > 10, (entity, len(checked))
        assert {lid: held[lid] for lid in checked} == {lid: anyone[legacy_parent[lid]] for lid in checked}, entity
        # a parent that is nowhere in the target (gone, quarantined, excluded) leaves the reference empty
        assert all(held[lid] is None for lid in mine if legacy_parent.get(lid) and legacy_parent[lid] not in anyone)

    # the cycle planted in the demo CRM (two accounts each the other's parent): cut at the smaller id, counted
    cycle = _all(legacy, "SELECT a.id, a.parent_id FROM accounts a JOIN accounts b ON b.id = a.parent_id"
                         " AND b.parent_id = a.id WHERE a.deleted = 0 AND b.deleted = 0 ORDER BY a.id")
    assert len(cycle) == 2
    companies = target_of(target_url, "companies", "accounts")
    ends = {companies.get(a) for a, _ in cycle}  # the target rows standing for the two
    assert None not in ends and len(ends) == 2, ends
    cut = _all(target_url, "SELECT c.legacy_id, t.parent_company_id FROM crm_migration.link_cut c"
                           " JOIN crm.companies t ON t.legacy_id = c.legacy_id WHERE c.entity = 'accounts'")
    assert len(cut) == 1 and cut[0][1] is None, cut  # one link of the cycle left empty, recorded
    other = (ends - {companies[cut[0][0]]}).pop()
    assert _all(target_url, "SELECT parent_company_id::text FROM crm.companies WHERE id = CAST(:i AS uuid)",
                i=other)[0][0] == companies[cut[0][0]]  # the other keeps its parent

    # the delta: a new manager keyed in, and a migrated contact now reporting to them, in one run
    contact = next(iter(sorted(_unmerged(target_url, "people", "contacts"))))
    with engine(legacy).begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO contacts (id, first_name, last_name, primary_address_country, lead_source, date_entered,"
            " date_modified, deleted) VALUES ('new-manager', 'Maria', 'Obermaier', 'Germany', 'Web Site', now(),"
            " now(), 0)"))
        conn.execute(sa.text("UPDATE contacts SET reports_to_id = 'new-manager', date_modified = now() WHERE id = :c"),
                     {"c": contact})
        # the cycle's cut member changes too: loaded again, it comes back with its parent, and is cut again
        conn.execute(sa.text("UPDATE accounts SET billing_address_city = 'Lyon', date_modified = now() WHERE id = :a"),
                     {"a": cut[0][0]})
    engine(legacy).dispose()
    dr = run_delta(dagbag, T1, entities=["accounts", "contacts"])
    assert str(dr.state) == "success", task_states(dr)
    assert _all(target_url, "SELECT address_city, parent_company_id FROM crm.companies WHERE legacy_id = :a",
                a=cut[0][0]) == [("Lyon", None)]
    ((manager, reports_to),) = _all(
        target_url, "SELECT (SELECT id::text FROM crm.people WHERE legacy_id = 'new-manager'), reports_to_id::text"
                    " FROM crm.people WHERE legacy_id = :c", c=contact)
    assert manager and reports_to == manager


def test_owners_from_a_column_alone(tmp_path, target_url, monkeypatch):
    """A legacy CRM without a users table: the owners are the distinct assigned_user_id values of the
    records (config/entities: derived_from), each record's owner the owner of its value, the default owner
    kept; a value no longer used by any live record leaves with the delta's hard-delete detection."""
    import shutil

    from conftest import ROOT
    from crm_migration.model.config import load_lots
    from crm_migration.ops import delta
    from crm_migration.source.sources import legacy_ids
    from helpers import run_pipeline

    uri, legacy = legacy_copy("crm_test_legacy_no_users")
    with engine(legacy).begin() as conn:
        conn.exec_driver_sql("DROP TABLE users")
    engine(legacy).dispose()
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "config", conf)
    (conf / "entities" / "00_users.yaml").write_text(
        "entity: users\nalias: v\ntarget: {table: owners}\n"
        "derived_from: {column: assigned_user_id, tables: [accounts, contacts, opportunities], always: ['1']}\n"
        "fields:\n  user_name: {from: id, kind: text, to: user_name, required: true}\n"
        "  created_at: {from: date_entered, kind: datetime, to: created_at}\n"
        "  modified_at: {from: date_modified, kind: datetime, to: updated_at}\n")
    (conf / "lots" / "00_users.yaml").write_text(
        "lot_id: users\ndescription: Owners from the records' assigned_user_id\nentities:\n  users:\n"
        "    required: [user_name]\n    dedupe: {enabled: false}\n")
    monkeypatch.setenv("CRM_CONFIG_DIR", str(conf))
    lots = {x.lot_id: x for x in load_lots()}
    run_pipeline(legacy, target_url, "owners_run", lots=[lots["users"], lots["accounts"]])

    used = {v for (v,) in _all(legacy, "SELECT assigned_user_id FROM accounts WHERE deleted = 0 UNION SELECT"
                                       " assigned_user_id FROM contacts WHERE deleted = 0 UNION SELECT"
                                       " assigned_user_id FROM opportunities WHERE deleted = 0") if v}
    owners = dict(_all(target_url, "SELECT legacy_id, user_name FROM crm.owners WHERE deleted_at IS NULL"))
    assert len(used) > 5 and set(owners) == used | {"1"} and all(owners[k] == k for k in owners)
    # each account's owner is the owner of its assigned_user_id; an empty one the default owner ('1')
    held = dict(_all(target_url, "SELECT c.legacy_id, o.legacy_id FROM crm.companies c"
                                 " LEFT JOIN crm.owners o ON o.id = c.owner_id"))
    legacy_owner = dict(_all(legacy, "SELECT id, assigned_user_id FROM accounts WHERE deleted = 0"))
    assert held and all(held[a] == (legacy_owner[a] or "1") for a in held)

    # the delta: a value no longer used anywhere is gone (hard-delete detection over the values)
    lonely = next(v for (v,) in _all(legacy, "SELECT assigned_user_id FROM contacts WHERE deleted = 0 AND"
                                             " assigned_user_id <> '1' GROUP BY 1 ORDER BY count(*), 1 LIMIT 1"))
    with engine(legacy).begin() as conn:
        for t in ("accounts", "contacts", "opportunities"):
            conn.execute(sa.text(f"UPDATE {t} SET assigned_user_id = '1' WHERE assigned_user_id = :v"), {"v": lonely})
    engine(legacy).dispose()
    assert lonely not in legacy_ids(legacy, "users")
    run_pipeline(legacy, target_url, "owners_run_2", lots=[lots["users"]])
    gone, _ = delta.deletions(target_url, legacy, lots["users"], "users", "owners_run_2", True)
    assert gone == [(lonely, "hard_deleted")]
