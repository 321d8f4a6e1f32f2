"""A malformed config fails at parse time with the file and the key named."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from crm_migration.model.config import load_lots, validate_key

from crm_migration.model.settings import ConfigError, load_migration_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def lots_dir(tmp_path: Path) -> Path:
    d = tmp_path / "lots"
    shutil.copytree(ROOT / "config" / "lots", d)
    return d


def test_shipped_config_is_valid():
    lots = load_lots()
    assert [lot.lot_id for lot in lots] == ["users", "accounts", "contacts", "opportunities", "leads", "activities"]
    assert load_migration_config().connections.target == "crm_target"


@pytest.mark.parametrize("edit, key", [
    (("threshold: 0.71 ", "threshold: 7 "), "entities.contacts.dedupe.threshold"),
    (("review_threshold: 0.65", "review_threshold: 0.9"), "entities.contacts.dedupe"),
    (("on_orphan_fk: quarantine", "on_orphan_fk: ignore"), "entities.contacts.on_orphan_fk"),
    (("default_region: FR", "default_regoin: FR"), "entities.contacts.default_regoin"),
    (("lot_id: contacts", "lot_id: \"contacts'; DROP TABLE x;--\""), "lot_id"),
    (("  contacts:\n", "  prospects:\n"), "entities"),
    (("source_filter: \"1=1\"", "source_filter: \"1=1; DELETE FROM contacts\""), "entities.contacts.source_filter"),
    (("depends_on: [accounts]", "depends_on: [nope]"), "depends_on"),
    (("    on_orphan_fk: quarantine", "    defaults: {shoe_size: 42}\n    on_orphan_fk: quarantine"), "<root>"),
])
def test_malformed_lot_names_file_and_key(lots_dir, edit, key):
    path = lots_dir / "02_contacts.yaml"
    text = path.read_text()
    assert edit[0] in text
    path.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(ConfigError) as err:
        load_lots(lots_dir)
    assert str(path) in str(err.value)
    assert f"{key}:" in str(err.value)


def test_broken_yaml_names_file(lots_dir):
    path = lots_dir / "01_accounts.yaml"
    path.write_text("lot_id: [unclosed\n")
    with pytest.raises(ConfigError, match="01_accounts.yaml: not valid YAML"):
        load_lots(lots_dir)


def test_duplicate_lot_id(lots_dir):
    (lots_dir / "03_again.yaml").write_text((lots_dir / "01_accounts.yaml").read_text())
    with pytest.raises(ConfigError, match="03_again.yaml: lot_id: 'accounts' already used"):
        load_lots(lots_dir)


@pytest.mark.parametrize("lot_id, run_id", [
    ("accounts'; DROP TABLE crm.people; --", "manual__1"),
    ("accounts", "manual__1' OR '1'='1"),
    ("Accounts", "r"),
    ("accounts", ""),
])
def test_unsafe_keys_rejected(lot_id, run_id):
    with pytest.raises(ValueError, match="invalid"):
        validate_key(lot_id, run_id)


@pytest.mark.parametrize("edit, message", [
    (("extract: select_users.sql\n", "extract: select_users.sql\nderived_from: {column: assigned_user_id,"
                                     " tables: [accounts]}\n"), "give one of extract"),
    (("extract: select_users.sql\n", "derived_from: {column: assigned_user_id, tables: []}\n"),
     "derived_from.tables"),
    (("extract: select_users.sql\n", ""), "give one of extract"),
])
def test_malformed_entity_names_file_and_key(tmp_path, edit, message):
    from crm_migration.model.spec import _load

    d = tmp_path / "entities"
    shutil.copytree(ROOT / "config" / "entities", d)
    path = d / "00_users.yaml"
    text = path.read_text()
    assert edit[0] in text
    path.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(ConfigError) as err:
        _load(str(d))
    assert str(path) in str(err.value) and message in str(err.value)
