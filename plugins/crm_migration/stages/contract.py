"""The extract contract, checked: every lot's extract query, run on a sample of the legacy CRM, must
return ``id``, ``date_modified``, ``deleted`` (when soft deletes are excluded) and a column per field of
the entity spec, with readable keys and dates. Run before any lot:

    python -m crm_migration.stages.contract [--lot contacts] [--sample 200]

Prints one line per (lot, entity): OK, or every break found (missing columns, empty or repeated ids,
unreadable modification times), and what the cleanse would quarantine in the sample, by reason. The
extract stage checks the columns too, before it writes anything.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field

from crm_migration.model.config import EntityConfig, LotConfig, load_lots
from crm_migration.model.spec import spec


class ContractError(ValueError):
    """An extract query does not return what the entity spec needs."""


def required_columns(entity: str, cfg: EntityConfig) -> list[str]:
    es = spec(entity)
    cols = ["id", "date_modified"] + (["deleted"] if cfg.obsolete.soft_deleted else [])
    return list(dict.fromkeys(cols + [es.source_of(n) for n, f in es.fields.items() if f.values_of is None]
                              + [f.type_from for f in es.fields.values() if f.type_from]))


def check_columns(entity: str, cfg: EntityConfig, columns: list[str]) -> None:
    missing = [c for c in required_columns(entity, cfg) if c not in columns]
    if missing:
        raise ContractError(f"the extract of {entity} ({spec(entity).extract}) does not return {missing}; it returns"
                            f" {list(columns)}. Alias them in the query, or change the fields' `from` in"
                            f" config/entities")


@dataclass
class Finding:
    lot_id: str
    entity: str
    rows: int = 0
    breaks: list[str] = field(default_factory=list)
    quarantine: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        head = f"{self.lot_id}/{self.entity}: {self.rows} rows sampled: "
        head += "OK" if not self.breaks else "BROKEN: " + "; ".join(self.breaks)
        if self.quarantine:
            head += " | the cleanse would quarantine " + ", ".join(f"{k} {v}" for k, v in self.quarantine.items())
        return head


def check(legacy_url: str, lot: LotConfig, entity: str, sample: int = 200) -> Finding:
    from crm_migration.rules.cleanse import cleanse_rows
    from crm_migration.source.legacy import json_row, read_with_fallback
    from crm_migration.source.sources import open_rows

    out = Finding(lot.lot_id, entity)
    cfg = lot.entities[entity]

    def read(tolerant: bool) -> list[dict]:
        rows = []
        with open_rows(legacy_url, lot, entity, tolerant=tolerant) as (_, source):
            for _, _, data, row in source:
                rows.append((row, data))
                if len(rows) >= sample:
                    break
        return rows

    try:
        rows = read_with_fallback(read)
    except Exception as exc:  # noqa: BLE001 - the query itself is broken: say so, go on with the next
        out.breaks.append(f"the query fails: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
        return out
    out.rows = len(rows)
    if not rows:
        out.breaks.append("no rows (is the source filter right?)")
        return out
    try:
        check_columns(entity, cfg, list(rows[0][0]))
    except ContractError as exc:
        out.breaks.append(str(exc))
    ids = Counter(None if r.get("id") in (None, "") else str(r["id"]) for r, _ in rows)
    if ids.get(None):
        out.breaks.append(f"{ids[None]} rows without an id")
    repeated = sorted(k for k, n in ids.items() if k is not None and n > 1)
    if repeated:
        out.breaks.append(f"ids not unique: {len(repeated)} repeated (one row per key: join link tables with an"
                          " aggregate)")
    if not out.breaks:
        import json

        res = cleanse_rows(entity, [json.loads(json_row(r)) for r, _ in rows], cfg)
        out.quarantine = dict(Counter(code for _, code, _, _ in res.quarantined).most_common())
    return out


def main(argv: list[str] | None = None) -> int:
    from crm_migration.model.settings import load_migration_config
    from crm_migration.model.db import connection_url

    ap = argparse.ArgumentParser(description="Check every lot's extract against the entity specs, on a sample.")
    ap.add_argument("--lot", help="only this lot")
    ap.add_argument("--sample", type=int, default=200, help="rows read per entity (default 200)")
    args = ap.parse_args(argv)
    legacy_url = connection_url(load_migration_config().connections.legacy)
    broken = 0
    for lot in load_lots():
        if args.lot and lot.lot_id != args.lot:
            continue
        for entity in lot.entities:
            f = check(legacy_url, lot, entity, args.sample)
            broken += bool(f.breaks)
            print(f.line())
    print("extract contract: " + ("OK" if not broken else f"{broken} extract(s) BROKEN"))
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
