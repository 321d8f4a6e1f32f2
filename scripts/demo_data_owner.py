"""What the demo's data owners decided after reading the quarantine of the demo lots (make demo ships the
result in config/examples/demo/data_owner/; run this again if the demo data changes):

- contacts quarantined for an e-mail a person can repair (``x at example.com``, ``x@@example.com``,
  ``x@example.com.``) get the repaired address as a correction; one that cannot be repaired (``x@``) is
  emptied: the person is migrated without it;
- rows the demo's legacy CRM cannot give a target row for (a parent that no longer exists, no name, a
  picklist value the business retired, merged into such a row) are waived by reason, with an approver.

    python scripts/demo_data_owner.py [TARGET_SQLALCHEMY_URL] [OUT_DIR]
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

import sqlalchemy as sa  # noqa: E402

from crm_demo import local_pg  # noqa: E402
from crm_migration.model.config import load_lots  # noqa: E402
from crm_migration.rules.cleanse import clean_email, matches_before_quarantine  # noqa: E402
from crm_migration.stages.data_owner import CORRECTION_COLUMNS, WAIVER_COLUMNS  # noqa: E402
from crm_migration.model.db import to_sqlalchemy_url  # noqa: E402

OUT = ROOT / "config" / "examples" / "demo" / "data_owner"
WAIVED_REASONS = {
    "transform:FK_ORPHAN": "its parent is not in the legacy CRM any more (deleted outright years ago): nothing"
                           " to attach it to",
    # cleanse:, or dedupe: where the lot deduplicates (the dedupe quarantines the rows no complete twin mended)
    "REQUIRED_MISSING": "no name, subject or key: no one can find or use such a record",
    "transform:UNMAPPED_VALUE": "a picklist value the business retired: the record goes with it",
    "transform:SURVIVOR_QUARANTINED": "a duplicate of a record that is not migrated",
}
APPROVER = "Head of Sales Operations (demo)"


def repaired(address: str | None) -> str | None:
    """The address a person would type instead, or None if there is none to guess."""
    if not address:
        return None
    fixed = re.sub(r"\s+at\s+", "@", address.strip()).replace("@@", "@").rstrip(".")
    email, err = clean_email(fixed)
    return email if not err else None


def main(url: str, out: Path) -> None:
    with sa.create_engine(url).connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT DISTINCT ON (legacy_id) legacy_id, raw_row ->> 'email' FROM stg.quarantine"
            " WHERE entity = 'contacts' AND reason_code = 'EMAIL_INVALID' AND lot_id = 'contacts'"
            " ORDER BY legacy_id").all()
    out.mkdir(parents=True, exist_ok=True)
    with (out / "corrections.csv").open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(CORRECTION_COLUMNS)
        for legacy_id, address in rows:
            fixed = repaired(address)
            why = "typo in the e-mail repaired" if fixed else "e-mail unusable: the person is migrated without it"
            w.writerow(["contacts", legacy_id, "email", fixed or "", why, "customer data steward (demo)"])
    with (out / "waivers.csv").open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(WAIVER_COLUMNS)
        configs = {e: cfg for lot in load_lots() for e, cfg in lot.entities.items()}
        for entity in ("accounts", "contacts", "opportunities", "leads", "activities"):
            for code, why in WAIVED_REASONS.items():
                if ":" not in code:
                    code = f"{'dedupe' if matches_before_quarantine(configs[entity]) else 'cleanse'}:{code}"
                w.writerow([entity, "", code, why, APPROVER])
    print(f"{len(rows)} corrections and {5 * len(WAIVED_REASONS)} waivers written to {out}")


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else to_sqlalchemy_url(
        local_pg.database_url(local_pg.server_url(allow_local=False), "crm_demo_target"))
    main(target, Path(sys.argv[2]) if len(sys.argv) > 2 else OUT)
