"""Many-to-many relations as SuiteCRM keeps them (accounts_contacts, opportunities_contacts with a role):
every live legacy link in the target's link table, counted by SQL on both databases; links deleted in
the legacy CRM leave the target with the delta, links added arrive."""

from __future__ import annotations

import sqlalchemy as sa
from conftest import legacy_copy, migrated_target
from helpers import run_delta, T1, target_of, task_states

from crm_migration.model.db import engine


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
    engine(legacy).dispose()
    dr = run_delta(dagbag, T1, entities=["accounts", "contacts"])
    assert str(dr.state) == "success", task_states(dr)
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
