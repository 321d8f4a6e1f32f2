"""A long stage logs rows done / total, its rate and the time left about every 10 s (Progress); a short one
never counts its rows."""

from __future__ import annotations

import logging

from crm_migration.model.slices import PROGRESS_SECONDS, Progress


def test_progress_lines_say_done_total_rate_and_time_left(caplog):
    asked = []
    caplog.set_level(logging.INFO, logger="crm_migration.model.slices")
    p = Progress("cleanse contacts", total=lambda: asked.append(1) or 1_000, every=0)
    for _ in range(4):
        p.add(100)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cleanse contacts")]
    assert len(lines) == 4 and asked == [1]  # the total is asked once
    assert lines[-1].startswith("cleanse contacts: 400 / 1,000 rows (40 %),") and "rows/s, about" in lines[-1]
    assert lines[-1].endswith("s left")


def test_a_short_step_logs_nothing_and_never_counts(caplog):
    caplog.set_level(logging.INFO, logger="crm_migration.model.slices")
    p = Progress("extract contacts", total=lambda: 1 / 0)
    p.add(5)
    assert PROGRESS_SECONDS == 10.0 and not caplog.records
    assert Progress("extract contacts", every=0).line().startswith("extract contacts: 0 rows, 0 rows/s")
