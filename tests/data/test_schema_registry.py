"""The channel registry and the schema hash derived from it."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from cis490.data.channels import PHASES, REGISTRY, Channel, Registry, WindowSpec, channel_names
from cis490.data.schema import read_schema, schema_bytes, schema_sha256


def test_phases_are_the_contract_order():
    assert PHASES == ("clean", "armed", "infecting", "infected_running")


def test_realistic_channels_are_a_prefix_of_oracle():
    real, oracle = channel_names("realistic"), channel_names("oracle")
    assert oracle[: len(real)] == real and len(oracle) > len(real)
    assert not any(n.startswith("proc.") for n in real)
    assert all(n.startswith("proc.") for n in oracle[len(real):])
    with pytest.raises(ValueError, match="unknown mode"):
        channel_names("omniscient")


def test_schema_hash_is_stable_for_the_same_registry():
    assert schema_bytes() == schema_bytes(REGISTRY, WindowSpec())
    assert schema_sha256() == schema_sha256(Registry(version=1, channels=REGISTRY.channels))


@pytest.mark.parametrize("change", ["drop", "add", "reorder", "rename", "version", "window"])
def test_schema_hash_changes_when_the_channel_registry_changes(change):
    chans = list(REGISTRY.channels)
    window = WindowSpec()
    reg = REGISTRY
    if change == "drop":
        reg = Registry(1, tuple(c for c in chans if c.name != "host.load1"))
    elif change == "add":
        reg = Registry(1, tuple(chans[:21] + [Channel("host.gpu_pct", "host", "gauge", "gpu_pct")] + chans[21:]))
    elif change == "reorder":
        reg = Registry(1, tuple([chans[1], chans[0]] + chans[2:]))
    elif change == "rename":
        reg = Registry(1, tuple([dataclasses.replace(chans[0], field="cpu_usr")] + chans[1:]))
    elif change == "version":
        reg = Registry(2, REGISTRY.channels)
    else:
        window = WindowSpec(30, 2)
    assert schema_sha256(reg, window) != schema_sha256()


def test_registry_refuses_a_mode_that_is_not_a_prefix():
    chans = list(REGISTRY.channels)
    proc_first = tuple([c for c in chans if c.source == "proc"] + [c for c in chans if c.source != "proc"])
    with pytest.raises(ValueError, match="prefix"):
        Registry(1, proc_first)
    with pytest.raises(ValueError, match="duplicate"):
        Registry(1, tuple(chans + chans[:1]))


def test_read_schema_refuses_a_schema_from_another_registry(tmp_path):
    p = tmp_path / "feature_schema_v1.json"
    p.write_bytes(schema_bytes(Registry(1, REGISTRY.channels[1:])))
    with pytest.raises(ValueError, match="does not match"):
        read_schema(p)
    p.write_bytes(schema_bytes(window=WindowSpec(30, 3)))
    assert read_schema(p)[1] == schema_sha256(window=WindowSpec(30, 3))


def test_channel_registry_imports_without_numpy_or_pandas():
    code = ("import sys; import cis490.data, cis490.data.channels; "
            "bad = {'numpy', 'pandas', 'pyarrow'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_window_spec_is_validated():
    with pytest.raises(ValueError, match="length_s"):
        WindowSpec(1, 1)
    with pytest.raises(ValueError, match="stride_s"):
        WindowSpec(10, 0)
    assert WindowSpec(20, 2).n_windows(120) == 51 and WindowSpec(20, 2).n_windows(10) == 0
