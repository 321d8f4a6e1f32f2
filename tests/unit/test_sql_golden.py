"""The upsert is generated from each entity's column list: its rendered SQL is pinned here, so a
change to the template or the columns shows up as a reviewable diff (regenerate with
`PYTHONPATH=plugins python tests/unit/test_sql_golden.py`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm_migration.stages.load import upsert_sql
from crm_migration.rules.transform import TARGET_COLUMNS

GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.mark.parametrize("entity", sorted(TARGET_COLUMNS))
def test_rendered_upsert_matches_golden(entity):
    assert upsert_sql(entity, "$chunk") == (GOLDEN / f"upsert_{entity}.sql").read_text(encoding="utf-8")


@pytest.mark.parametrize("entity", sorted(TARGET_COLUMNS))
def test_upsert_keeps_the_newer_legacy_version(entity):
    sql = upsert_sql(entity, "$chunk")
    assert "EXCLUDED.migrated_legacy_modified >= t.migrated_legacy_modified" in sql
    for column in TARGET_COLUMNS[entity]:
        if column not in ("id", "legacy_id"):
            assert f"{column} = EXCLUDED.{column}" in sql


if __name__ == "__main__":
    for e in TARGET_COLUMNS:
        (GOLDEN / f"upsert_{e}.sql").write_text(upsert_sql(e, "$chunk"), encoding="utf-8")
