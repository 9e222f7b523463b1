"""The import graph's rules (docs/ARCHITECTURE.md), checked by running scripts/import_graph.py.

The script reads the sources (``ast``) and counts imports inside functions too.
A rule broken by a new import fails here, with the script's summary as the message."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "import_graph.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_no_import_cycle_and_no_rule_violation():
    res = _run("--json")
    assert res.returncode == 0, res.stdout + res.stderr
    out = json.loads(res.stdout)
    assert out["modules"] > 50  # it saw the package
    assert out["module_cycles"] == [] and out["layer_cycles"] == [], _run().stdout
    assert out["violations"] == [], _run().stdout
    # the coordinator imports nothing of the ML side, at any depth of its own imports
    fleet_targets = {e.split(" -> ")[1] for e in out["layer_edges"] if e.startswith("fleet -> ")}
    assert fleet_targets <= {"common", "progress", "heap"}, fleet_targets


def test_the_script_reports_a_broken_rule(tmp_path):
    """The checker is not vacuous: a copy of the package with one forbidden import
    (fleet importing models, inside a function) is reported, exit status 1."""
    import shutil

    root = tmp_path / "repo"
    shutil.copytree(REPO / "cis490", root / "cis490", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "scripts").mkdir()
    shutil.copy(SCRIPT, root / "scripts" / "import_graph.py")
    bad = root / "cis490" / "fleet" / "layout.py"
    bad.write_text(bad.read_text() + "\n\ndef _bad():\n    from cis490.models import configs  # noqa\n")
    res = subprocess.run([sys.executable, str(root / "scripts" / "import_graph.py"), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stdout + res.stderr
    out = json.loads(res.stdout)
    assert any("cis490.fleet.layout" in v and "cis490.models" in v for v in map(str, out["violations"]))
