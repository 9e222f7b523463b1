"""Property-based tests: any input parses to a valid object or raises the
project's own error type with a message — never another exception, never a hang."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cis490.fleet.layout import SpoolError, check_part, parse_name, split_claimed
from cis490.fleet.manifest import ManifestError, parse_manifest
from cis490.fleet.spec import JobSpec, SpecError, build_spec, parse_spec

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
spec_keys = st.sampled_from(["format", "id", "name", "model", "mode", "hyper", "split_recipe", "train_hosts",
                             "seed", "priority", "constraints", "data", "enqueued_ns", "signature"])
spec_like = st.dictionaries(spec_keys, json_values, max_size=14)


def _valid_spec_bytes() -> bytes:
    return JobSpec(model="mlp", mode="oracle", hyper={"hidden": [8]}).to_bytes()


@FAST
@given(st.binary(max_size=2000))
def test_spec_parser_on_arbitrary_bytes(data):
    try:
        spec = parse_spec(data)
    except SpecError as exc:
        assert str(exc)
    else:
        assert spec.to_bytes() and parse_name(spec.name)


@FAST
@given(spec_like)
def test_spec_parser_on_spec_shaped_json(raw):
    try:
        spec = parse_spec(json.dumps(raw).encode())
    except SpecError as exc:
        assert str(exc)
    else:
        assert parse_name(spec.name)


@FAST
@given(st.data())
def test_spec_parser_on_mutations_of_a_valid_spec(data):
    raw = json.loads(_valid_spec_bytes())
    key = data.draw(spec_keys)
    raw[key] = data.draw(json_values)
    try:
        spec = parse_spec(json.dumps(raw).encode())
    except SpecError as exc:
        assert str(exc)
    else:  # only harmless mutations can survive the id/name check
        assert spec.name == raw["name"]


@FAST
@given(st.text(max_size=3000))
def test_manifest_loader_on_arbitrary_text(text):
    try:
        m = parse_manifest(text.encode("utf-8", "surrogatepass"))
    except ManifestError as exc:
        assert str(exc)
    else:
        assert all(parse_name(j.name) for j in m.jobs)


toml_scalars = st.sampled_from(['"gbt"', '"mlp"', '"smoke"', '"oracle"', '"realistic"', "1", "-3", "1.5", "true",
                                '"../x"', '"con"', '"a/b"', "[1, 2]", '["pi"]', "{ epochs = 2 }", "{ lr = \"x\" }",
                                '"host"', '"nope"'])
toml_keys = st.sampled_from(["model", "mode", "hyper", "seed", "priority", "split_recipe", "train_hosts",
                             "require_cuda", "min_ram_gib", "allowed_hosts", "bogus"])


@FAST
@given(st.lists(st.dictionaries(toml_keys, toml_scalars, max_size=6), max_size=5))
def test_manifest_loader_on_job_tables(jobs):
    text = "".join("[[jobs]]\n" + "".join(f"{k} = {v}\n" for k, v in job.items()) for job in jobs)
    try:
        m = parse_manifest(text.encode())
    except ManifestError as exc:
        assert "jobs[" in str(exc) or "TOML" in str(exc)
    else:
        assert len(m.jobs) == len(jobs)


@FAST
@given(st.text(max_size=80))
def test_name_grammar(text):
    for fn in (parse_name, split_claimed):
        result = fn(text)
        if result is not None:
            joined = "".join(map(str, result))
            assert "/" not in joined and "\\" not in joined and "\x00" not in joined and ".." not in text
    try:
        part = check_part(text, "mode")
    except SpoolError as exc:
        assert "invalid mode" in str(exc)
    else:
        assert part == text and part.lower() == part and "/" not in part and part not in ("con", "nul", "aux")


@FAST
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_build_spec_never_raises_foreign_exceptions(raw):
    try:
        build_spec(raw)
    except SpecError as exc:
        assert str(exc)
