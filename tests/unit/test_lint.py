"""The house rules (STYLE.md) as ruff checks them with the repository's ruff.toml: run with the suite, so CI
fails on a violation as on any other test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_finds_nothing():
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-2000:]
