"""Quality gates: Soda v4 contracts from include/soda/<entity>/<stage>.yml, run in-process.

A gate passes when Soda says ``is_ok`` (warn-level checks only report). Any exception
inside Soda (a missing table, a bad contract) fails the gate too: it is not ``is_failed``
in Soda's terms, but it is not safe to move on either. Every check result is kept in
crm_migration.gate_result for the report.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
import yaml

from crm_migration.model.config import validate_key
from crm_migration.model.db import dsn_parts, engine, replace_slice
from crm_migration.model.ddl import RENAMED_STAGES
from crm_migration.model.settings import REPO_ROOT, ConfigError

log = logging.getLogger(__name__)
SODA_DIR = REPO_ROOT / "include" / "soda"


class GateFailed(RuntimeError):
    """A fail-level check failed, or the gate could not be evaluated."""


@dataclass
class GateOutcome:
    entity: str
    stage: str
    ok: bool
    checks: list[dict] = field(default_factory=list)
    error: str | None = None

    def summary(self) -> str:
        lines = [f"gate {self.stage} of {self.entity}: {'PASSED' if self.ok else 'FAILED'}"]
        lines += [f"  {c['outcome']:<8} {c['name']} ({c['column'] or 'dataset'}) value={c['value']}"
                  + (f" (threshold: {c['threshold']})" if c.get("threshold") else "") for c in self.checks]
        if self.error:
            lines.append(f"  error: {self.error}")
        return "\n".join(lines)

    def cause(self) -> str:
        """One line for the person on call: which check failed, with what value, against which threshold."""
        failed = [c for c in self.checks if c["outcome"] in ("FAILED", "ERROR", "NOT_EVALUATED")]
        what = "; ".join(f"check '{c['name']}'{' on ' + c['column'] if c['column'] else ''} measured {c['value']}"
                         + (f", threshold {c['threshold']}" if c.get("threshold") else "") for c in failed[:3])
        if len(failed) > 3:
            what += f"; and {len(failed) - 3} more"
        if self.error and not what:
            what = f"the gate could not be evaluated: {self.error.splitlines()[0][:300]}"
        return f"gate {self.stage} of {self.entity} failed: {what or 'see the log'}"


# contract files of an older release, named after the data, not the stage
_OLD_CONTRACT_NAMES = {new: old for old, new in RENAMED_STAGES.items()}


def contract_path(entity: str, stage: str) -> Path:
    """include/soda/<entity>/<stage>.yml; a file under the stage's old name fails loudly (it would be ignored)."""
    old = SODA_DIR / entity / f"{_OLD_CONTRACT_NAMES.get(stage, stage)}.yml"
    if old.name != f"{stage}.yml" and old.is_file():
        raise ConfigError(f"{old}: gate contracts are named after the stage they follow: rename it {stage}.yml")
    return SODA_DIR / entity / f"{stage}.yml"


_FORMATS = {  # kind -> (check name, regex, warn-only)
    "email": ("e-mail shape", r"^[^@\s]+@[^@\s]+\.[^@\s]+$", False),
    "country": ("ISO 3166 alpha-2 country", "^[A-Z]{2}$", False),
    "phone": ("phone in E.164 (warn only; unparseable numbers are kept as keyed)", r"^\+[1-9][0-9]{6,14}$", True),
}


def _missing(name: str | None = None, warn: bool = False) -> dict:
    check: dict = {"missing": {}}
    if name:
        check["missing"]["name"] = name
    if warn:
        check["missing"]["threshold"] = {"must_be": 0, "level": "warn"}
    return check


def standard_contract(entity: str, stage: str) -> dict:
    """The checks every entity gets from its spec: rows present, key present and unique, required
    fields present, e-mails / countries / phones in shape (clean)."""
    from crm_migration.model.spec import spec, target_schema

    es = spec(entity)
    cols: dict[str, list[dict]] = {}
    required = es.required
    if stage == "extract":
        dataset, where = "stg/extract", f" AND entity = '{entity}'"
        cols["legacy_id"] = [_missing("legacy id present (rows without one are quarantined by cleanse)", warn=True)]
        cols["row_hash"] = [_missing()]
    elif stage in ("cleanse", "dedupe"):
        dataset, where = f"stg/{entity}_{stage}", ""
        cols["legacy_id"] = [_missing(), {"duplicate": {}}]
        # at cleanse a row may lack a required value until the dedupe merges it into a complete twin
        # (rules.cleanse.MATCHABLE); the dedupe's survivors have every one
        for name in required if stage == "dedupe" else ():
            cols[name] = [_missing()]
        if stage == "cleanse":
            for name, f in es.fields.items():
                if f.kind in _FORMATS:
                    title, regex, warn = _FORMATS[f.kind]
                    check = {"name": title, "valid_format": {"name": f.kind, "regex": regex}}
                    if warn:
                        check["threshold"] = {"metric": "percent", "must_be_less_than": 5, "level": "warn"}
                    cols.setdefault(name, []).append({"invalid": check})
    elif stage == "transform":
        dataset, where = f"stg/{entity}_transform", ""
        cols["id"] = [_missing(), {"duplicate": {}}]
        cols["legacy_id"] = [_missing(), {"duplicate": {}}]
        for name in required:
            if es.fields[name].to:
                cols[es.fields[name].to] = [_missing()]
    elif stage == "load":
        dataset, where = f"{target_schema()}/{es.target.table}", None
        cols["legacy_id"] = [_missing(), {"duplicate": {}}]
        for name in required:
            if es.fields[name].to:
                cols[es.fields[name].to] = [_missing()]
    else:
        raise ValueError(f"unknown gate stage {stage!r}")
    out: dict = {"variables": {"DATABASE": None, "LOT_ID": None, "RUN_ID": None},
                 "dataset": f"crm_target/${{var.DATABASE}}/{dataset}"}
    if where is not None:
        out["filter"] = f"lot_id = '${{var.LOT_ID}}' AND run_id = '${{var.RUN_ID}}'{where}"
    out["columns"] = [{"name": c, "checks": checks} for c, checks in cols.items()]
    out["checks"] = [{"row_count": {"threshold": {"must_be_greater_than": 0}}}]
    return out


def contract(entity: str, stage: str) -> dict:
    """The generated checks merged with include/soda/<entity>/<stage>.yml, if the team wrote one: its
    columns replace the generated ones of the same name, its dataset checks replace the row count."""
    out = standard_contract(entity, stage)
    path = contract_path(entity, stage)
    if not path.is_file():
        return out
    own = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    mine = {c["name"]: c for c in own.get("columns") or []}
    out["columns"] = [mine.pop(c["name"], c) for c in out["columns"]] + list(mine.values())
    if own.get("checks"):
        out["checks"] = own["checks"]
    for key in ("dataset", "filter"):
        if own.get(key):
            out[key] = own[key]
    return out


def _datasource_file(url: str, directory: str) -> str:
    parts = dsn_parts(url)
    conn = {k: parts[k] for k in ("host", "port", "database", "user", "password")}
    path = os.path.join(directory, "datasource.yml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump({"name": "crm_target", "type": "postgres", "connection": conn}, f)
    return path


# Soda's contract parser is not thread-safe (two verifications at once in one process fail with YAML
# syntax errors or IndexErrors): the delta's entities run side by side in threads, their gates one at a time.
# Its first import too: soda_core registers its data source plugins while it is imported, and two threads
# importing it at once left one with no 'postgres' type ("Data source type 'postgres' not available": a
# delta sync failed so in `make demo` on a busy machine, 2026-12-04).
_SODA_LOCK = threading.Lock()


def run_soda(url: str, entity: str, stage: str, lot_id: str, run_id: str) -> GateOutcome:
    validate_key(lot_id, run_id)  # pasted into the contract's filter as raw text
    os.environ.setdefault("SODA_CORE_TELEMETRY_ENABLED", "false")
    outcome = GateOutcome(entity, stage, ok=False)
    try:
        with _SODA_LOCK, tempfile.TemporaryDirectory(prefix="soda-") as tmp:
            from soda_core.contracts.api.verify_api import verify_contract_locally

            contract_file = os.path.join(tmp, f"{entity}_{stage}.yml")
            with open(contract_file, "w", encoding="utf-8") as f:
                yaml.safe_dump(contract(entity, stage), f, sort_keys=False, allow_unicode=True)
            result = verify_contract_locally(
                data_source_file_path=_datasource_file(url, tmp),
                contract_file_path=contract_file,
                variables={"LOT_ID": lot_id, "RUN_ID": run_id, "DATABASE": dsn_parts(url)["database"]},
            )
        for cvr in result.contract_verification_results:
            for cr in cvr.check_results:
                outcome.checks.append({
                    "name": cr.check.name, "column": cr.check.column_name, "outcome": cr.outcome.name,
                    "value": cr.threshold_value, "detail": cr.diagnostic_metric_values or {},
                    "threshold": _threshold(cr.check.threshold),
                })
        outcome.ok = bool(result.is_ok)
        if result.has_errors:
            outcome.ok = False
            outcome.error = result.get_errors_str()
        if not outcome.checks and outcome.error is None:
            outcome.ok, outcome.error = False, "the contract produced no check results"
    except Exception as exc:  # noqa: BLE001 - any Soda error means the data was not verified
        outcome.ok, outcome.error = False, f"{type(exc).__name__}: {exc}"
    return outcome


def _threshold(t: object) -> str | None:
    """Soda's threshold as one phrase: 'must be less than 5' ('level: fail' left out)."""
    if t is None:
        return None
    parts = [line.replace(":", "") for line in str(t).splitlines() if not line.startswith("level")]
    return ", ".join(parts) or None


def record_gate(url: str, lot_id: str, run_id: str, outcome: GateOutcome) -> None:
    rows = [(c["name"], c["column"], c["outcome"], c["value"], json.dumps(c["detail"], default=str))
            for c in outcome.checks]
    if outcome.error:
        rows.append(("gate evaluation", None, "ERROR", None, json.dumps({"error": outcome.error[:2000]})))
    with engine(url).begin() as conn:
        replace_slice(conn, "crm_migration.gate_result",
                      {"lot_id": lot_id, "run_id": run_id, "entity": outcome.entity, "stage": outcome.stage},
                      ("check_name", "column_name", "outcome", "value", "detail"), rows)


# the staging table each stage writes (named after it); the load writes the target CRM
STAGE_TABLE = {"extract": "stg.extract", "cleanse": "stg.{e}_cleanse", "dedupe": "stg.{e}_dedupe",
               "transform": "stg.{e}_transform"}


def slice_rows(url: str, entity: str, stage: str, lot_id: str, run_id: str) -> int:
    table = STAGE_TABLE[stage].format(e=entity)
    extra = " AND entity = :e" if stage == "extract" else ""
    with engine(url).connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE lot_id = :l AND run_id = :r{extra}"),
                            {"l": lot_id, "r": run_id, "e": entity}).scalar_one()


def gate(url: str, entity: str, stage: str, lot_id: str, run_id: str, allow_empty: bool = False) -> GateOutcome:
    """Run, record and log a gate; raise GateFailed when it does not pass.

    allow_empty (delta sync): an empty slice is normal when nothing changed; it passes unchecked.
    """
    if allow_empty and stage in STAGE_TABLE and slice_rows(url, entity, stage, lot_id, run_id) == 0:
        outcome = GateOutcome(entity, stage, ok=True, checks=[{
            "name": "empty slice: nothing changed, nothing to check", "column": None, "outcome": "SKIPPED",
            "value": 0, "detail": {}}])
        record_gate(url, lot_id, run_id, outcome)
        log.info("%s", outcome.summary())
        return outcome
    outcome = run_soda(url, entity, stage, lot_id, run_id)
    record_gate(url, lot_id, run_id, outcome)
    log.info("%s", outcome.summary())
    if not outcome.ok:
        raise GateFailed(f"{outcome.cause()}. Fix the data (crm_migration.gate_result has every check) or the"
                         f" rule, then clear this gate with its downstream tasks.\n{outcome.summary()}")
    return outcome


def gate_load(url: str, legacy_url: str, lot, entity: str, run_id: str, sample_fraction: float = 1.0,
                only_ids: set[str] | None = None, allow_empty: bool = False, scoped: bool = False) -> dict:
    """The gate after a load: the Soda contract on the target table, then the reconciliation by id of
    the run's legacy rows (read again from the legacy source) against the target. Lot runs, the delta
    sync and the rehearsal all pass through here; scoped (a delta): the relations' links of the rows it touched."""
    from crm_migration.checks.reconcile import reconcile_run

    outcome = gate(url, entity, "load", lot.lot_id, run_id, allow_empty=allow_empty)
    rec = reconcile_run(url, legacy_url, lot, entity, run_id, sample_fraction, only_ids)
    rows = [(f"reconciliation by id: {kind}", None, "FAILED" if kind in rec.failure_kinds and n else "PASSED", n,
             json.dumps({"ids": rec.failures.get(kind, [])})) for kind, n in rec.counts.items()]
    with engine(url).begin() as conn:
        replace_slice(conn, "crm_migration.gate_result",
                      {"lot_id": lot.lot_id, "run_id": run_id, "entity": entity, "stage": "reconcile"},
                      ("check_name", "column_name", "outcome", "value", "detail"), rows)
    links = _relations_checked(url, legacy_url, lot.lot_id, run_id, entity, scoped)
    if not rec.ok:
        raise GateFailed(rec.summary())
    if links:
        raise GateFailed(links)
    return {"entity": entity, "ok": True, "checks": len(outcome.checks), "reconciliation": rec.counts}


def _relations_checked(url: str, legacy_url: str, lot_id: str, run_id: str, entity: str, scoped: bool) -> str:
    """Every relation of the entity counted by id against the target (stages.relations.check), recorded as
    the gate's 'relations' checks; returns the failure's message ('' when none)."""
    from crm_migration.stages.relations import FAILING, check, relations_of

    if not relations_of(entity):
        return ""
    counts = check(url, legacy_url, entity, lot_id=lot_id, run_id=run_id, scoped=scoped)
    rows = [(f"relation {name}: {kind}", None, "FAILED" if kind in FAILING and c[kind] else "PASSED", c[kind],
             json.dumps({"lost_ids": c["lost_ids"]} if kind == "lost" else {}))
            for name, c in counts.items() for kind in ("legacy_links", "linked", "end_missing", *FAILING)]
    with engine(url).begin() as conn:
        replace_slice(conn, "crm_migration.gate_result",
                      {"lot_id": lot_id, "run_id": run_id, "entity": entity, "stage": "relations"},
                      ("check_name", "column_name", "outcome", "value", "detail"), rows)
    for name, c in counts.items():
        log.info("relation %s: %d live legacy links = %d linked + %d with an end not in the target; lost %d,"
                 " unexpected %d", name, c["legacy_links"], c["linked"], c["end_missing"], c["lost"], c["unexpected"])
    bad = [f"relation {name}: {c['lost']} live legacy links missing from the target"
           f" (first: {', '.join(c['lost_ids'])}),"
           f" {c['unexpected']} migrated links no legacy link stands for" for name, c in counts.items()
           if any(c[k] for k in FAILING)]
    return "; ".join(bad) + (". Clear the load with its downstream tasks (the relation is synced again)" if bad else "")
