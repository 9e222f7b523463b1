"""Measured figures of the test beds: merged into ``bench/out/*_facts.json`` and printed."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "bench" / "out"


def record_fact(facts_json: Path, key: str, value) -> None:
    """Merge one measured figure into ``facts_json`` (and print it)."""
    facts_json.parent.mkdir(parents=True, exist_ok=True)
    try:
        facts = json.loads(facts_json.read_text())
    except (FileNotFoundError, ValueError):
        facts = {}
    facts[key] = value
    facts["_updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    tmp = facts_json.with_suffix(".tmp")
    tmp.write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, facts_json)
    print(f"\n[fact] {key} = {json.dumps(value, sort_keys=True)}")
