"""The full-sweep validator flags each injected defect, and nothing else."""

from __future__ import annotations

import hashlib
import json

import pytest

from cis490.data.synth import SynthConfig, pack_episode, plan_store, render_episode, synthesize
from cis490.data.validate import read_validation, validate_store, write_validation


def test_validator_flags_each_injected_defect_and_nothing_else(tiny_store, tiny_validation):
    _, rep = tiny_store
    result = tiny_validation[1]
    rows = {r["episode_id"]: r for r in result.rows}

    # the torn line: both its episodes are skipped, the warning names the line
    assert set(rows) == {p.episode_id for p in rep.plans} - set(rep.torn_episode_ids)
    torn = [w for w in result.warnings if "torn" in w]
    assert len(torn) == 1 and f"index.jsonl line {rep.torn_index_line}:" in torn[0]
    orphans = [w for w in result.warnings if "not in index.jsonl" in w]
    assert len(orphans) == 1 and all(e in orphans[0] for e in rep.torn_episode_ids)
    assert len(result.warnings) == 2

    invalid = {e for e, r in rows.items() if r["status"] == "invalid"}
    assert invalid == set(rep.truncated) | set(rep.no_meta)
    assert "truncated" in rows[rep.truncated[0]]["reasons"]
    assert rows[rep.no_meta[0]]["reasons"] == "missing meta.json"

    warned = {e for e, r in rows.items() if r["warnings"]}
    assert warned == set(rep.counter_reset)
    reset = rows[rep.counter_reset[0]]
    assert reset["status"] == "ok" and reset["counter_resets"] == 1
    assert reset["warnings"].startswith("counter reset: host.net_tx_bytes_total at row")

    degraded = {e for e, r in rows.items() if r["status"] == "degraded"}
    assert degraded == set(rep.degraded) and degraded
    assert all(rows[e]["reasons"] == "netflow.jsonl missing" for e in degraded)
    for e, r in rows.items():
        if e not in invalid | degraded:
            assert r["status"] == "ok" and r["reasons"] == ""


def test_clean_store_has_no_findings_but_degraded_hosts(tmp_path):
    rep = synthesize(tmp_path / "s", SynthConfig(episodes_per_host=3, duration_s=60, seed=1, defects=False))
    result = validate_store(tmp_path / "s")
    assert result.warnings == []
    assert {r["status"] for r in result.rows} <= {"ok", "degraded"}
    assert all(r["warnings"] == "" for r in result.rows)
    assert {r["episode_id"] for r in result.rows if r["status"] == "degraded"} == set(rep.degraded)


def test_validation_parquet_round_trip(tiny_validation):
    df = read_validation(tiny_validation[0])
    assert list(df["episode_id"]) == sorted(df["episode_id"])
    assert set(df["status"]) == {"ok", "degraded", "invalid"}
    assert any("torn" in w for w in df.attrs["warnings"])
    assert df["started_at_ns"].dtype.kind == "i"


# -- hand-made defects the generator does not inject ----------------------------

def _one_episode_store(root, tamper=None, index_tamper=None):
    cfg = SynthConfig(episodes_per_host=1, duration_s=60, seed=3, defects=False)
    plan = plan_store(cfg)[0]
    members = render_episode(plan, cfg.seed)
    if tamper:
        tamper(members)
    blob = pack_episode(members)
    (root / plan.host_id).mkdir(parents=True)
    (root / plan.path).write_bytes(blob)
    rec = {"episode_id": plan.episode_id, "host_id": plan.host_id, "profile": plan.profile,
           "sample_name": plan.sample_name, "started_at": plan.started_at, "duration_s": 60,
           "path": plan.path, "sha256": hashlib.sha256(blob).hexdigest(), "size_bytes": len(blob)}
    if index_tamper:
        index_tamper(rec)
    (root / "index.jsonl").write_text(json.dumps(rec) + "\n")
    row = validate_store(root).rows[0]
    return row


def _edit_meta(**changes):
    def tamper(members):
        meta = json.loads(members["meta.json"])
        meta.update(changes)
        members["meta.json"] = json.dumps(meta).encode()
    return tamper


def _edit_host_row(i, **changes):
    def tamper(members):
        rows = [json.loads(x) for x in members["host.jsonl"].splitlines()]
        rows[i].update(changes)
        members["host.jsonl"] = "".join(json.dumps(r) + "\n" for r in rows).encode()
    return tamper


def test_untampered_hand_store_is_clean(tmp_path):
    row = _one_episode_store(tmp_path)
    assert row["status"] in ("ok", "degraded") and row["warnings"] == ""


@pytest.mark.parametrize("tamper,index_tamper,reason", [
    (_edit_meta(channels=["host", "netflow", "proc", "gpu"]), None, "unknown channel 'gpu'"),
    (_edit_host_row(5, gpu_temp_c=71), None, "unknown channel(s) in host.jsonl: gpu_temp_c"),
    (_edit_host_row(10, t_wall_ns=1), None, "non-monotonic clock: host.jsonl t_wall_ns at row 11"),
    (_edit_host_row(10, t_mono_ns=0), None, "non-monotonic clock: host.jsonl t_mono_ns"),
    (_edit_meta(profile="beacon-x"), None, "disagrees with the index"),
    (_edit_meta(phases=[]), None, "phases"),
    (_edit_meta(profile="benign-idle"), lambda r: r.update(profile="benign-idle"),
     "is benign but meta.json labels phases"),
    (None, lambda r: r.update(sha256="0" * 64), "sha256/size differ"),
    (None, lambda r: r.update(path=r["path"].replace(".tar", "-gone.tar")), "tarball missing"),
])
def test_bad_episode_is_invalid_with_a_reason(tmp_path, tamper, index_tamper, reason):
    row = _one_episode_store(tmp_path, tamper, index_tamper)
    assert row["status"] == "invalid"
    assert reason in row["reasons"]


def test_malformed_index_lines_are_skipped_with_their_line_number(tmp_path):
    (tmp_path / "index.jsonl").write_text('{"episode_id": "a"}\nnot json\n\n[1]\n')
    result = validate_store(tmp_path)
    assert result.rows == []
    assert [w.split(":")[0] for w in result.warnings] == [
        "index.jsonl line 1", "index.jsonl line 2", "index.jsonl line 4"]


def test_validation_is_deterministic_across_jobs(tiny_store, tiny_validation, tmp_path):
    result = validate_store(tiny_store[0], jobs=2)
    assert result.rows == tiny_validation[1].rows and result.warnings == tiny_validation[1].warnings
    write_validation(result, tmp_path / "a.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == tiny_validation[0].read_bytes()


def test_missing_proc_stream_is_degraded_not_invalid(tmp_path):
    def drop_proc(members):
        del members["proc.jsonl"]
        meta = json.loads(members["meta.json"])
        meta["channels"] = [c for c in meta["channels"] if c != "proc"]
        members["meta.json"] = json.dumps(meta).encode()
    row = _one_episode_store(tmp_path, drop_proc)
    assert row["status"] == "degraded" and "proc.jsonl missing" in row["reasons"]
    assert not row["has_proc"]


def test_validation_records_each_episodes_onset_and_collector(tiny_store, tiny_validation, tmp_path):
    import pyarrow.parquet as pq

    from cis490.data.synth import COLLECTOR_VERSION

    store, rep = tiny_store
    rows = {r["episode_id"]: r for r in tiny_validation[1].rows}
    usable = [e for e, r in rows.items() if r["status"] != "invalid"]
    assert usable
    kinds = set()
    for eid in usable:
        plan = next(p for p in rep.plans if p.episode_id == eid)
        meta = json.loads(render_episode(plan, 7)["meta.json"])     # TINY's seed
        first = next((p for p in meta["phases"] if p["phase"] != "clean"), None)
        if plan.benign:  # a benign-only episode never leaves clean: no onset
            assert first is None and rows[eid]["onset_ns"] is None
        else:  # the first phase after clean; t0 itself for an episode recorded mid-chain
            assert rows[eid]["onset_ns"] == first["start_wall_ns"] >= meta["t0_wall_ns"]
        kinds.add(plan.benign)
        assert rows[eid]["collector_version"] == COLLECTOR_VERSION
    assert kinds == {True, False}
    for eid in set(rows) - set(usable):
        assert rows[eid]["onset_ns"] is None and rows[eid]["collector_version"] is None

    # a table written before the two columns existed is still read, with nulls
    path, _ = tiny_validation
    old = pq.read_table(path).drop(["onset_ns", "collector_version"])
    pq.write_table(old, tmp_path / "old.parquet")
    df = read_validation(tmp_path / "old.parquet")
    assert df["onset_ns"].isna().all() and df["collector_version"].isna().all()
    assert len(df) == len(rows)


def _phases_meta(names, cuts):
    """A tamper giving meta.json the phases ``names`` with boundaries at ``cuts`` seconds."""
    def tamper(members):
        meta = json.loads(members["meta.json"])
        t0, n = meta["t0_wall_ns"], meta["duration_s"]
        edges = [0, *cuts, n]
        meta["phases"] = [{"phase": ph, "start_wall_ns": t0 + edges[i] * 10**9,
                           "end_wall_ns": t0 + edges[i + 1] * 10**9} for i, ph in enumerate(names)]
        members["meta.json"] = json.dumps(meta).encode()
    return tamper


@pytest.mark.parametrize("names,cuts,status,finding,onset_s", [
    # a run of consecutive phases: an episode that starts mid-infection is usable
    (["infecting", "infected_running"], [20], "ok", "", 0),
    (["clean", "armed"], [30], "ok", "", 30),
    # a malicious profile that never leaves clean: usable, the fact is surfaced
    (["clean"], [], "ok", "never leaves 'clean' (the sample did not run)", None),
    # skipping a phase, or phases out of order, is not a label the pipeline can trust
    (["clean", "infecting"], [30], "invalid", "not a run of consecutive phases", None),
    (["armed", "clean"], [30], "invalid", "not a run of consecutive phases", None),
])
def test_phases_are_a_run_of_the_chain(tmp_path, names, cuts, status, finding, onset_s):
    row = _one_episode_store(tmp_path, _phases_meta(names, cuts))
    if status == "invalid":
        assert row["status"] == "invalid" and finding in row["reasons"]
        return
    assert row["status"] in ("ok", "degraded") and (finding in row["warnings"] if finding else
                                                    row["warnings"] == "")
    t0 = row["started_at_ns"]
    assert row["onset_ns"] == (None if onset_s is None else t0 + onset_s * 10**9)
