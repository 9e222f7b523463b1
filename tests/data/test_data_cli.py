"""The cis490 data verbs end to end on a tiny store: summary lines, exit codes."""

from __future__ import annotations

import re

import pytest

from cis490.cli import main


def _run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_verbs_end_to_end(tmp_path, capsys):
    store, val = tmp_path / "store", tmp_path / "validation_v1.parquet"
    rc, out, err = _run(capsys, "synth", "--out", str(store), "--episodes-per-host", "4",
                        "--duration-s", "60", "--hosts", "2", "--seed", "2", "--quiet")
    assert rc == 0 and err == "" and out.count("\n") == 1 and out.startswith("synth: 8 episodes")

    rc, out, err = _run(capsys, "validate", "--store", str(store), "--out", str(val))
    assert rc == 0 and out.count("\n") == 1
    m = re.match(r"validate: episodes ok (\d+) / degraded (\d+) / invalid (\d+);", out)
    assert m and int(m.group(3)) == 2 and sum(map(int, m.groups())) == 6
    assert "torn or malformed record" in err  # warnings go to stderr
    # stderr is not a terminal here: plain progress lines instead of a bar, start and end
    lines = [l for l in err.splitlines() if l.startswith("validate: ")]
    assert lines[0] == "validate: 0/6 episodes (0 %)"
    assert re.fullmatch(r"validate: 6/6 episodes \(100 %\), [\d.e+]+/s, took \d+s", lines[-1])

    rc, out, err = _run(capsys, "validate", "--store", str(store), "--out", str(val), "--quiet")
    assert rc == 0 and err == ""

    for verb in ("features", "tensors"):
        rc, out, err = _run(capsys, verb, "--validation", str(val), "--store", str(store),
                            "--out-dir", str(tmp_path / verb), "--window-s", "10", "--stride-s", "5", "--quiet")
        assert rc == 0 and err == "" and out.count("\n") == 1
        m = re.match(rf"{verb}: episodes ok \d+ / degraded \d+ / invalid 2 \(skipped\); windows written (\d+);", out)
        assert m and int(m.group(1)) == 4 * 11


@pytest.mark.parametrize("argv,msg", [
    (["validate", "--store", "{tmp}", "--out", "{tmp}/v.parquet"], "no index.jsonl"),
    (["features", "--validation", "{tmp}/missing.parquet", "--store", "{tmp}", "--out-dir", "{tmp}/f"],
     "missing.parquet"),
    (["synth", "--out", "{tmp}/s", "--episodes-per-host", "2"], "episodes_per_host"),
    (["synth", "--out", "{tmp}/s", "--jobs", "0"], "--jobs must be >= 1"),
    (["features", "--validation", "{tmp}/v", "--store", "{tmp}", "--out-dir", "{tmp}/f", "--window-s", "1"],
     "length_s"),
])
def test_cli_errors_are_one_line_and_exit_1(tmp_path, capsys, argv, msg):
    rc, out, err = _run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert rc == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"cis490 {argv[0]}: error:") and msg in err


def test_cli_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["synth"])
    assert exc.value.code == 2


def test_synth_options_default_to_the_generators_own():
    """The parser repeats SynthConfig's defaults (to stay light): they must agree."""
    import dataclasses

    from cis490.data.cli import SYNTH_DEFAULTS
    from cis490.data.synth import SynthConfig

    fields = {f.name: f.default for f in dataclasses.fields(SynthConfig)}
    assert SYNTH_DEFAULTS == {k: fields[k] for k in SYNTH_DEFAULTS}
