"""Where every legacy row ends: the one vocabulary of the load's ledger, the checks, the reports and the
freeze. Each legacy row ends loaded, merged into a loaded survivor, excluded or quarantined; at the freeze a
quarantined row a data owner accepted is waived. The strings are stored (crm_migration.legacy_ledger, the
reconciliation, the reports): never rename one without migrating what holds it."""

from __future__ import annotations

LOADED = "loaded"
MERGED = "merged"
EXCLUDED = "excluded"
QUARANTINED = "quarantined"
WAIVED = "waived"
# every legacy row of a run ends in exactly one of these
ROW_OUTCOMES = (LOADED, MERGED, EXCLUDED, QUARANTINED)
