"""One user-error base and one way to report it (docs/ARCHITECTURE.md, "Errors"),
and the safe small-file read every layer uses (cis490.common.read_small)."""

from __future__ import annotations

import json
import os
import sys
import types

import pytest

from cis490 import cli as cis490_cli
from cis490.common import InputError, SmallFileError, UserError, read_small
from cis490.fleet import cli as spool_cli
from cis490.fleet.layout import BadEntry, SpoolError, read_bounded


def test_every_library_error_a_user_can_cause_is_a_user_error():
    from cis490.common import HyperError
    from cis490.data.episode import EpisodeError
    from cis490.evaluate.run import EvalRefused
    from cis490.fleet.manifest import ManifestError
    from cis490.train.data import SchemaMismatch
    from cis490.train.run import DriverError

    for cls in (SpoolError, ManifestError, DriverError):
        assert issubclass(cls, UserError)
    for cls in (HyperError, EpisodeError, EvalRefused, SchemaMismatch, SmallFileError):
        assert issubclass(cls, InputError) and issubclass(cls, ValueError)


def _verbs(raise_what):
    def add(verb):
        verb("boom", lambda args: (_ for _ in ()).throw(raise_what), "raise")
    return [add]


@pytest.mark.parametrize("exc", [InputError("bad value in x.toml"), SpoolError("spool says no"),
                                 FileNotFoundError(2, "No such file or directory", "/nowhere/x")])
def test_cis490_spool_prints_a_user_error_as_one_line_exit_1(exc, capsys, tmp_path):
    rc = spool_cli.main(["--spool", str(tmp_path), "boom"], extra_verbs=_verbs(exc))
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and err.startswith("cis490-spool boom: ")
    assert "Traceback" not in err
    if isinstance(exc, OSError):
        assert err.strip() == "cis490-spool boom: No such file or directory: /nowhere/x"


def test_cis490_spool_shows_a_bug_with_its_traceback(tmp_path):
    with pytest.raises(ZeroDivisionError):  # not swallowed: Python prints the traceback
        spool_cli.main(["--spool", str(tmp_path), "boom"], extra_verbs=_verbs(ZeroDivisionError("bug")))
    with pytest.raises(ValueError):  # a plain ValueError is a bug too
        spool_cli.main(["--spool", str(tmp_path), "boom"], extra_verbs=_verbs(ValueError("bug")))


def test_cis490_spool_usage_error_exits_2(tmp_path):
    with pytest.raises(SystemExit) as info:
        spool_cli.main(["--spool", str(tmp_path), "no-such-verb"])
    assert info.value.code == 2


@pytest.fixture
def fake_verb(monkeypatch):
    """``cis490 boom`` raising what the test sets."""
    box = {}
    mod = types.ModuleType("fake_verbs")

    def register(sub):
        p = sub.add_parser("boom")
        p.set_defaults(func=lambda args: (_ for _ in ()).throw(box["exc"]))

    mod.register = register
    monkeypatch.setitem(sys.modules, "fake_verbs", mod)
    monkeypatch.setattr(cis490_cli, "VERB_MODULES", ("fake_verbs",))
    return box


def test_cis490_prints_a_user_error_as_one_line_and_a_bug_with_its_traceback(fake_verb, capsys):
    fake_verb["exc"] = InputError("x.parquet: missing column(s) y")
    assert cis490_cli.main(["boom"]) == 1
    err = capsys.readouterr().err
    assert err == "cis490 boom: error: x.parquet: missing column(s) y\n"
    fake_verb["exc"] = KeyError("bug")
    with pytest.raises(KeyError):
        cis490_cli.main(["boom"])
    with pytest.raises(SystemExit) as info:
        cis490_cli.main(["no-such-verb"])
    assert info.value.code == 2


def test_read_small_reads_a_regular_file_and_refuses_the_rest(tmp_path):
    f = tmp_path / "a.json"
    f.write_bytes(b'{"a": 1}')
    assert json.loads(read_small(f)) == {"a": 1}
    assert read_small(f, limit=8) == b'{"a": 1}'
    with pytest.raises(SmallFileError) as info:
        read_small(f, limit=7)
    assert info.value.reason == "oversized (larger than 7 bytes)"
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)  # no writer: a blocking open would hang here forever
    with pytest.raises(SmallFileError) as info:
        read_small(fifo)
    assert info.value.reason == "a FIFO (never opened)"
    with pytest.raises(SmallFileError, match="a directory"):
        read_small(tmp_path)
    link = tmp_path / "link.json"
    link.symlink_to(f)
    with pytest.raises(OSError) as oinfo:  # O_NOFOLLOW: never followed
        read_small(link)
    assert not isinstance(oinfo.value, SmallFileError)
    with pytest.raises(FileNotFoundError):
        read_small(tmp_path / "missing.json")
    # the spool's reader words the same refusal as a quarantine reason
    with pytest.raises(BadEntry) as binfo:
        read_bounded(fifo, 100)
    assert binfo.value.reason == "a FIFO (never opened)"


def test_a_corrupt_checkpoint_is_an_input_error(tmp_path):
    from cis490.models import checkpoint

    bad = tmp_path / f"x{checkpoint.SUFFIX}"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not a .* checkpoint"):
        checkpoint.read_checkpoint(bad)
