"""Tiny generated stores shared by the data tests (built once per session)."""

from __future__ import annotations

import pytest

from cis490.data.channels import WindowSpec
from cis490.data.synth import SynthConfig, synthesize

TINY = SynthConfig(episodes_per_host=8, duration_s=60, seed=7)  # the default world's 4 hosts
WINDOW = WindowSpec(20, 4)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny") / "store"
    report = synthesize(root, TINY)
    return root, report


@pytest.fixture(scope="session")
def tiny_validation(tiny_store, tmp_path_factory):
    from cis490.data.validate import validate_store, write_validation

    root, _ = tiny_store
    result = validate_store(root)
    out = tmp_path_factory.mktemp("val") / "validation_v1.parquet"
    write_validation(result, out)
    return out, result


@pytest.fixture(scope="session")
def tiny_features(tiny_store, tiny_validation, tmp_path_factory):
    from cis490.data.features import build_features

    out = tmp_path_factory.mktemp("features")
    summary = build_features(tiny_validation[0], tiny_store[0], out, window=WINDOW)
    return out, summary


@pytest.fixture(scope="session")
def tiny_tensors(tiny_store, tiny_validation, tmp_path_factory):
    from cis490.data.tensors import build_tensors

    out = tmp_path_factory.mktemp("tensors")
    summary = build_tensors(tiny_validation[0], tiny_store[0], out, window=WINDOW)
    return out, summary
