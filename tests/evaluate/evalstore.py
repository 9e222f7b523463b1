"""A tiny real store for the end-to-end eval tests: the data stages and gbt checkpoints,
run in-process (no interpreter start-up: the suite runs on 2 shared cores)."""

from __future__ import annotations

from pathlib import Path

from cis490.cli import main as cis490_main


def run_stage(main, *args: str) -> None:
    rc = main(list(args))
    if rc != 0:
        raise RuntimeError(f"{' '.join(args)} failed with exit status {rc}")


def data_args(root: Path) -> list[str]:
    """The data options of `cis490 eval` and the training driver for a store under ``root``."""
    return ["--validation", str(root / "validation_v1.parquet"),
            "--summary", str(root / "features" / "features_window_v1.parquet"),
            "--tensors", str(root / "tensors"),
            "--schema", str(root / "features" / "feature_schema_v1.json")]


def build_store(root: Path, episodes_per_host: int, duration_s: int) -> Path:
    """synth → validate → features → tensors under ``root``; the validation table's path."""
    st, val = root / "store", root / "validation_v1.parquet"
    run_stage(cis490_main, "synth", "--out", str(st), "--episodes-per-host", str(episodes_per_host),
              "--duration-s", str(duration_s), "--quiet")
    run_stage(cis490_main, "validate", "--store", str(st), "--out", str(val), "--quiet")
    for verb in ("features", "tensors"):
        run_stage(cis490_main, verb, "--validation", str(val), "--store", str(st),
                  "--out-dir", str(root / verb), "--quiet")
    return val


def train_gbt(root: Path, out: Path, mode: str, train_hosts: str, seed: int, split_seed: int = 0) -> None:
    """A 3-round gbt checkpoint on the host split trained on ``train_hosts`` (comma-separated)."""
    from cis490.train.run import main as train_main

    run_stage(train_main, "--model", "gbt", "--mode", mode, *data_args(root),
              "--train-hosts", train_hosts, "--split-recipe", "host", "--seed", str(seed),
              "--split-seed", str(split_seed), "--hyper", "epochs=3", "--out", str(out))
