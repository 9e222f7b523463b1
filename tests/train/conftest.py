"""A tiny real data store (synth, validate, features, tensors; built once per session) for the driver tests."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class DemoData:
    root: Path
    validation: Path
    summary: Path
    tensors: Path
    schema: Path

    def argv(self, model: str, out: Path, *extra: str, mode: str = "realistic") -> list[str]:
        return ["--model", model, "--mode", mode, "--validation", str(self.validation),
                "--summary", str(self.summary), "--tensors", str(self.tensors),
                "--schema", str(self.schema), "--train-hosts", "elliott-thinkpad",
                "--split-recipe", "host", "--seed", "0", "--out", str(out), *extra]


def _cis490(*args: str) -> None:
    res = subprocess.run([sys.executable, "-m", "cis490", *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"cis490 {' '.join(args)} failed:\n{res.stdout}{res.stderr}")


def build_demo_data(root: Path) -> DemoData:
    """synth -> validate -> features -> tensors under ``root``: a tiny real data store."""
    store, val = root / "store", root / "validation_v1.parquet"
    _cis490("synth", "--out", str(store), "--episodes-per-host", "14", "--duration-s", "60",
            "--quiet")
    _cis490("validate", "--store", str(store), "--out", str(val), "--quiet")
    _cis490("features", "--validation", str(val), "--store", str(store),
            "--out-dir", str(root / "features"), "--quiet")
    _cis490("tensors", "--validation", str(val), "--store", str(store),
            "--out-dir", str(root / "tensors"), "--quiet")
    return DemoData(root=root, validation=val,
                    summary=root / "features" / "features_window_v1.parquet",
                    tensors=root / "tensors",
                    schema=root / "features" / "feature_schema_v1.json")


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> DemoData:
    return build_demo_data(tmp_path_factory.mktemp("demo"))
