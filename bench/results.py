"""The one file every benchmark writes: bench/results.json, a key per benchmark."""

from __future__ import annotations

import json
from pathlib import Path

PATH = Path(__file__).resolve().parent / "results.json"


def save(key: str, results: dict) -> Path:
    """Store ``results`` under ``key``, keeping the other benchmarks' figures."""
    merged = json.loads(PATH.read_text()) if PATH.exists() else {}
    merged[key] = results
    PATH.write_text(json.dumps(merged, indent=2) + "\n")
    return PATH
