"""Benchmark of the training driver's resume feature (``python -m cis490.train.run --resume-dir``).

    .venv/bin/python bench/bench_resume.py                # gbt, mlp, gru; 3 runs each way (~3-4 min, 2 cores)
    .venv/bin/python bench/bench_resume.py --quick        # shorter fits, 1 run each way (~1 min)
    .venv/bin/python bench/bench_resume.py --models gbt --repeats 5 --note "idle 8-core box"

Builds the data once under ``--out/data-<episodes>x<duration>/`` with the ``cis490``
data stages (synth, validate, features, tensors; the same recipe and directory as
``bench/bench_train.py``, so either reuses the other's), then, per model, runs the
driver as a worker would (realistic mode, host split, train host ``elliott-thinkpad``,
seed 0, ``threads = 1``) with a fixed budget that early stopping cannot cut short
(``patience`` large; nets ``min_steps = min_check_steps = 0``: exactly ``epochs``
epochs, one check and one resume write each):

1. **overhead**: ``--repeats`` uninterrupted runs without ``--resume-dir`` and as many
   with a fresh one, interleaved (plain first, then resume first, ...); wall and CPU
   seconds of the process (``os.wait4``) and the fit's own wall seconds (the driver's
   ``fit ... s wall`` line); medians and the overhead in per cent. The resume file's
   replacements are counted by polling it every 20 ms (a lower bound when writes come
   faster);
2. **size** of ``resume.ckpt``: the final state a complete run leaves, and the state a
   SIGTERM saved;
3. **save latency**: a run with a fresh ``--resume-dir`` gets SIGTERM once
   ``resume.ckpt`` exists and the uninterrupted runs' median start-up (wall - fit)
   plus ``--at`` of their median fit has passed; the times from the signal to the
   state's last replacement and to the driver's ``interrupted by SIGTERM`` line
   (both polled every 2 ms) and to the process's exit (75, ``EXIT_RESUMABLE``): it
   finishes the current batch (gbt: round), writes the state, logs, and shuts the
   interpreter down — the last step alone is measured on every run too (from the
   driver's last line, ``wrote ...``, to the exit; polled every 20 ms);
4. **interrupt + resume**: the same ``--resume-dir`` and ``--out`` rerun to the end;
   the wall time of both parts against the uninterrupted medians, and whether the
   resumed ``--out`` is byte-identical to the uninterrupted runs' (without and with
   ``--resume-dir``) — the one thing checked: exit 1 when it is not.

Prints two tables, writes everything to ``--out/bench_resume.json`` and keeps the
runs' directories and stderr logs under ``--out/resume/`` (git-ignored). Wall times
include waiting for the CPU: on a shared machine the CPU seconds are the steadier
figure (the cores and load averages are printed and recorded; ``--note`` adds a line).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cis490.common import EXIT_RESUMABLE  # light: no numpy/torch
from _store import build_store  # noqa: E402  (bench/ is this script's own directory)

MODELS = ("gbt", "mlp", "gru")
# budgets that run to the end (no early stop); full ~5-10 s a run on the shared 2-core machine
_NET = {"patience": 1000, "min_steps": 0, "min_check_steps": 0}
SETTINGS = {
    "full": {
        "gbt": {"epochs": 1200, "patience": 100000, "learning_rate": 0.03},
        "mlp": {"epochs": 50, **_NET},
        "gru": {"epochs": 15, **_NET},
    },
    "quick": {
        "gbt": {"epochs": 500, "patience": 100000, "learning_rate": 0.03},
        "mlp": {"epochs": 20, **_NET},
        "gru": {"epochs": 6, **_NET},
    },
}
RESUME_FILE = "resume.ckpt"
FIT_LINE = re.compile(r"fit ([0-9.]+) s wall, ([0-9.]+) s CPU")
SAVED_LINE = re.compile(r"interrupted by (\w+): resume state saved \(epoch (\d+), batch (\d+)\)")
RESUMING_LINE = re.compile(r"resuming from epoch (\d+), batch (\d+)")
FINAL_LINE = re.compile(rb"cis490\.train\.run: (wrote |interrupted by )")
COUNT_LINE = re.compile(r"(\d+) train windows \((\d+) episodes\), (\d+) val windows")


def driver_argv(data: Path, model: str, hyper: dict, out: Path, resume_dir: Path | None) -> list[str]:
    argv = [sys.executable, "-m", "cis490.train.run", "--model", model, "--mode", "realistic",
            "--validation", str(data / "validation_v1.parquet"),
            "--summary", str(data / "features" / "features_window_v1.parquet"),
            "--tensors", str(data / "tensors"),
            "--schema", str(data / "features" / "feature_schema_v1.json"),
            "--train-hosts", "elliott-thinkpad", "--split-recipe", "host", "--seed", "0",
            "--out", str(out)]
    for key, value in hyper.items():
        argv += ["--hyper", f"{key}={json.dumps(value)}"]
    if resume_dir is not None:
        argv += ["--resume-dir", str(resume_dir)]
    return argv


# -- one driver process -------------------------------------------------------------------

def _stamp(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def drive(argv: list[str], log: Path, resume_dir: Path | None, *,
          kill_after_s: float | None = None, poll_s: float = 0.02) -> dict:
    """Run ``argv`` (stdout discarded, stderr to ``log``) and reap it with ``os.wait4``.

    Polls ``resume_dir/resume.ckpt`` every ``poll_s`` (counting its replacements); with
    ``kill_after_s``, sends SIGTERM once the file exists and that many seconds have passed
    since the start, then polls every 2 ms for the state's last replacement before the exit.
    """
    rfile = resume_dir / RESUME_FILE if resume_dir is not None else None
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
    pid, last, writes, first_file_s = proc.pid, None, 0, None
    t_kill = t_saved = t_final = None
    tail, reader = b"", open(log, "rb")
    while True:
        got, status, usage = os.wait4(pid, os.WNOHANG)
        now = time.perf_counter()
        if got == pid:
            break
        if t_final is None:  # the driver's last line: "wrote <ckpt>" or "interrupted by ..."
            tail = (tail + reader.read())[-4096:]
            if FINAL_LINE.search(tail):
                t_final = now
        if rfile is not None:
            stamp = _stamp(rfile)
            if stamp is not None and stamp != last:
                writes += 1
                last = stamp
                if first_file_s is None:
                    first_file_s = now - t0
                if t_kill is not None:
                    t_saved = now
        if (kill_after_s is not None and t_kill is None and first_file_s is not None
                and now - t0 >= kill_after_s):
            t_kill = time.perf_counter()
            os.kill(pid, signal.SIGTERM)
        time.sleep(0.002 if t_kill is not None else poll_s)
    proc.returncode = rc = os.waitstatus_to_exitcode(status)
    reader.close()
    if rfile is not None and t_kill is not None:  # a replacement between the last poll and the exit
        stamp = _stamp(rfile)
        if stamp is not None and stamp != last:
            writes, t_saved = writes + 1, now
    text = log.read_text(errors="replace")
    fit = FIT_LINE.search(text)
    rec: dict = {"rc": rc, "wall_s": now - t0, "cpu_s": usage.ru_utime + usage.ru_stime,
                 "fit_wall_s": float(fit.group(1)) if fit else None,
                 "fit_cpu_s": float(fit.group(2)) if fit else None,
                 "last_line_to_exit_ms": (now - t_final) * 1e3 if t_final is not None else None,
                 "log": str(log.relative_to(ROOT) if log.is_relative_to(ROOT) else log)}
    if rfile is not None:
        rec["resume_writes_seen"] = writes
        rec["resume_file_first_s"] = first_file_s
        rec["resume_bytes"] = rfile.stat().st_size if rfile.exists() else None
    if t_kill is not None:
        rec["sigterm_at_s"] = t_kill - t0
        rec["sigterm_to_exit_ms"] = (now - t_kill) * 1e3
        rec["sigterm_to_saved_ms"] = (t_saved - t_kill) * 1e3 if t_saved is not None else None
        rec["sigterm_to_logged_ms"] = (t_final - t_kill) * 1e3 if t_final is not None else None
        m = SAVED_LINE.search(text)
        rec["stopped_at"] = [int(m.group(2)), int(m.group(3))] if m else None
    m = RESUMING_LINE.search(text)
    if m:
        rec["resumed_from"] = [int(m.group(1)), int(m.group(2))]
    m = COUNT_LINE.search(text)
    if m:
        rec["train_windows"], rec["val_windows"] = int(m.group(1)), int(m.group(3))
    if rc not in (0, EXIT_RESUMABLE):
        tail = text.strip().splitlines()[-3:]
        raise SystemExit(f"{' '.join(argv[2:6])} ... exited {rc} (log {log}):\n" + "\n".join(tail))
    return rec


def out_files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()} if out.is_dir() else {}


def _median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def _pct(new: float | None, base: float | None) -> float | None:
    return None if new is None or not base else 100.0 * (new - base) / base


# -- one model ----------------------------------------------------------------------------

def bench_model(data: Path, work: Path, model: str, hyper: dict, repeats: int, at: float) -> dict:
    mdir = work / model
    shutil.rmtree(mdir, ignore_errors=True)
    mdir.mkdir(parents=True)
    plain, resumed = [], []
    for i in range(repeats):  # interleaved, the order swapped every pair: drifting load hits both alike
        rdir = mdir / f"resume{i}" / "state"
        pair = [(plain, driver_argv(data, model, hyper, mdir / f"plain{i}" / "out", None),
                 mdir / f"plain{i}" / "stderr.log", None),
                (resumed, driver_argv(data, model, hyper, mdir / f"resume{i}" / "out", rdir),
                 mdir / f"resume{i}" / "stderr.log", rdir)]
        for runs, argv, log, resume_dir in pair[::-1] if i % 2 else pair:
            runs.append(drive(argv, log, resume_dir))
        print(f"  {model}: run {i + 1}/{repeats}: {plain[-1]['wall_s']:.1f} s plain, "
              f"{resumed[-1]['wall_s']:.1f} s with --resume-dir", flush=True)
    want = out_files(mdir / "plain0" / "out")
    stable = all(out_files(mdir / f"{kind}{i}" / "out") == want
                 for kind in ("plain", "resume") for i in range(repeats))

    wall_plain, fit_plain = _median(plain, "wall_s"), _median(plain, "fit_wall_s")
    idir, rdir = mdir / "interrupted", mdir / "interrupted" / "state"
    argv = driver_argv(data, model, hyper, idir / "out", rdir)
    startup = statistics.median(r["wall_s"] - r["fit_wall_s"] for r in plain)  # imports, loading, saving
    part1 = drive(argv, idir / "part1.log", rdir, kill_after_s=startup + at * fit_plain)
    part2 = None
    if part1["rc"] == EXIT_RESUMABLE:
        part2 = drive(argv, idir / "part2.log", rdir)
    got = out_files(idir / "out")
    # None: the run ended before the signal (nothing was interrupted, nothing to compare)
    identical = (bool(want) and got == want) if part2 is not None else None
    total = part1["wall_s"] + part2["wall_s"] if part2 else None
    print(f"  {model}: SIGTERM at {part1.get('sigterm_at_s', 0):.1f} s -> exit {part1['rc']} "
          f"after {part1.get('sigterm_to_exit_ms', 0):.0f} ms; resumed run "
          f"{part2['wall_s'] if part2 else float('nan'):.1f} s; --out identical: {_yes(identical)}",
          flush=True)
    return {
        "hyper": hyper, "repeats": repeats,
        "train_windows": plain[0].get("train_windows"), "val_windows": plain[0].get("val_windows"),
        "plain": plain, "resume": resumed,
        "median": {
            "plain_wall_s": wall_plain, "resume_wall_s": _median(resumed, "wall_s"),
            "plain_cpu_s": _median(plain, "cpu_s"), "resume_cpu_s": _median(resumed, "cpu_s"),
            "plain_fit_wall_s": fit_plain, "resume_fit_wall_s": _median(resumed, "fit_wall_s"),
            "last_line_to_exit_ms": _median(plain + resumed, "last_line_to_exit_ms"),
        },
        "overhead_pct": {
            "wall": _pct(_median(resumed, "wall_s"), wall_plain),
            "cpu": _pct(_median(resumed, "cpu_s"), _median(plain, "cpu_s")),
            "fit_wall": _pct(_median(resumed, "fit_wall_s"), _median(plain, "fit_wall_s")),
        },
        "resume_writes_seen": _median(resumed, "resume_writes_seen"),
        "final_state_bytes": _median(resumed, "resume_bytes"),
        "uninterrupted_outputs_identical": stable,
        "interrupted": {"part1": part1, "part2": part2, "total_wall_s": total,
                        "total_cpu_s": part1["cpu_s"] + part2["cpu_s"] if part2 else None,
                        "vs_plain_pct": _pct(total, wall_plain),
                        "vs_resume_pct": _pct(total, _median(resumed, "wall_s")),
                        "out_identical": identical},
        "checkpoint_bytes": sum(len(b) for b in want.values()),
    }


# -- report -------------------------------------------------------------------------------

def _f(value, fmt: str, width: int) -> str:
    if value is None:
        return f"{'-':>{width}}"
    sign, fmt = (fmt[0], fmt[1:]) if fmt[0] in "+- " else ("", fmt)
    return f"{value:>{sign}{width}{fmt}}"


def _yes(flag: bool | None) -> str:
    return "not interrupted" if flag is None else "yes" if flag else "NO"


def _hyper_text(hyper: dict) -> str:
    short = {"epochs": "ep", "patience": "pat", "learning_rate": "lr", "min_steps": "ms", "min_check_steps": "mcs"}
    return ",".join(f"{short.get(k, k)}={v}" for k, v in hyper.items())


def print_tables(results: dict) -> None:
    print("\n1-2. uninterrupted runs: medians; overhead of --resume-dir; resume.ckpt a complete run leaves")
    print(f"{'model':<6}{'budget':<28}{'runs':>5}{'wall s':>8}{'+resume':>8}{'ovh %':>7}"
          f"{'cpu s':>8}{'+resume':>8}{'ovh %':>7}{'fit s':>7}{'+resume':>8}{'ovh %':>7}"
          f"{'writes':>7}{'state KiB':>10}{'ckpt KiB':>9}{'exit ms':>8}")
    for model, r in results.items():
        m, o = r["median"], r["overhead_pct"]
        print(f"{model:<6}{_hyper_text(r['hyper']):<28}{r['repeats']:>5}"
              f"{_f(m['plain_wall_s'], '.2f', 8)}{_f(m['resume_wall_s'], '.2f', 8)}{_f(o['wall'], '+.1f', 7)}"
              f"{_f(m['plain_cpu_s'], '.2f', 8)}{_f(m['resume_cpu_s'], '.2f', 8)}{_f(o['cpu'], '+.1f', 7)}"
              f"{_f(m['plain_fit_wall_s'], '.2f', 7)}{_f(m['resume_fit_wall_s'], '.2f', 8)}"
              f"{_f(o['fit_wall'], '+.1f', 7)}{_f(r['resume_writes_seen'], '.0f', 7)}"
              f"{_f(r['final_state_bytes'] and r['final_state_bytes'] / 1024, '.1f', 10)}"
              f"{_f(r['checkpoint_bytes'] / 1024, '.1f', 9)}{_f(m['last_line_to_exit_ms'], '.0f', 8)}")
    print("\n3-4. SIGTERM mid-run, then resumed with the same --resume-dir/--out")
    print(f"{'model':<6}{'kill at s':>10}{'stopped at':>12}{'->saved ms':>11}{'->logged':>9}{'->exit ms':>10}"
          f"{'exit':>5}{'state KiB':>10}{'part1 s':>8}{'part2 s':>8}{'total s':>8}{'vs plain':>9}"
          f"{'vs +res':>8}{'resumed from':>13}{'  out identical'}")
    for model, r in results.items():
        i = r["interrupted"]
        p1, p2 = i["part1"], i["part2"] or {}
        stopped = "e{}/b{}".format(*p1["stopped_at"]) if p1.get("stopped_at") else "-"
        frm = "e{}/b{}".format(*p2["resumed_from"]) if p2.get("resumed_from") else "-"
        print(f"{model:<6}{_f(p1.get('sigterm_at_s'), '.2f', 10)}{stopped:>12}"
              f"{_f(p1.get('sigterm_to_saved_ms'), '.0f', 11)}{_f(p1.get('sigterm_to_logged_ms'), '.0f', 9)}"
              f"{_f(p1.get('sigterm_to_exit_ms'), '.0f', 10)}"
              f"{p1['rc']:>5}{_f(p1['resume_bytes'] and p1['resume_bytes'] / 1024, '.1f', 10)}"
              f"{p1['wall_s']:>8.2f}{_f(p2.get('wall_s'), '.2f', 8)}{_f(i['total_wall_s'], '.2f', 8)}"
              f"{_f(i['vs_plain_pct'], '+.1f', 8)}%{_f(i['vs_resume_pct'], '+.1f', 7)}%{frm:>13}"
              f"  {_yes(i['out_identical'])}")
    print("\nwall/cpu: the driver process (wait4), fit: its 'fit ... s wall' line; ovh: --resume-dir vs none; "
          "writes: resume.ckpt replacements seen (20 ms polls);\nstate: resume.ckpt (table 1: the final one a "
          "complete run leaves; table 2: the one SIGTERM saved), ckpt: the --out files; exit ms: the driver's "
          "last line -> exit\n(interpreter teardown); ->saved/->logged/->exit: SIGTERM -> state replaced / "
          "'interrupted by' line / exit 75; eE/bB: epoch E, B batches done\n(gbt: after R rounds e(R+1)/b0); "
          "total: part1 + part2 wall, vs the medians without (vs plain) and with (vs +res) --resume-dir; "
          "out identical: the resumed\n--out's bytes vs the uninterrupted run's")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="shorter fits and one run each way")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {','.join(MODELS)}")
    p.add_argument("--repeats", type=int, default=None, help="uninterrupted runs each way (default 3; --quick 1)")
    p.add_argument("--at", type=float, default=0.5,
                   help="SIGTERM once resume.ckpt exists and this fraction of the plain runs' median fit "
                        "has passed (after their median start-up)")
    p.add_argument("--episodes-per-host", type=int, default=20)
    p.add_argument("--duration-s", type=int, default=120)
    p.add_argument("--note", default="", help="a line about the machine, printed and recorded")
    p.add_argument("--out", default=str(ROOT / "bench" / "out"))
    args = p.parse_args()
    scale = "quick" if args.quick else "full"
    repeats = args.repeats or (1 if args.quick else 3)
    models = args.models.split(",")
    unknown = [m for m in models if m not in SETTINGS[scale]]
    if unknown:
        p.error(f"unknown model(s) {','.join(unknown)}: choose from {','.join(MODELS)}")

    t_start = time.perf_counter()
    load0 = os.getloadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data, built_s = build_store(out, args.episodes_per_host, args.duration_s)
    print(f"data: {data} ({'built in %.1f s' % built_s if built_s is not None else 'reused'})")
    print(f"machine: {os.cpu_count()} cores, load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} at start"
          + (f"; {args.note}" if args.note else ""), flush=True)
    results = {m: bench_model(data, out / "resume", m, SETTINGS[scale][m], repeats, args.at) for m in models}
    total = time.perf_counter() - t_start
    load1 = os.getloadavg()

    print_tables(results)
    first = results[models[0]]
    print(f"\n{first['train_windows']} train / {first['val_windows']} val windows; {scale} settings, "
          f"SIGTERM at start-up + {args.at:.0%} of the plain fit (once resume.ckpt exists); "
          f"machine: {os.cpu_count()} cores, load average {load0[0]:.2f} at start, {load1[0]:.2f} at end"
          + (f" ({args.note})" if args.note else "")
          + "; wall includes waiting for the CPU, CPU seconds are the steadier figure")
    print(f"total bench wall: {total:.1f} s")

    report = {
        "argv": sys.argv, "scale": scale, "repeats": repeats, "at": args.at, "total_wall_s": total,
        "data": {"dir": str(data), "episodes_per_host": args.episodes_per_host, "duration_s": args.duration_s,
                 "built_s": built_s},
        "machine": {"cpu_count": os.cpu_count(), "loadavg_start": load0, "loadavg_end": load1,
                    "note": args.note, "python": platform.python_version(), "platform": platform.platform()},
        "models": results,
    }
    dest = out / "bench_resume.json"
    dest.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {dest}")

    bad = [m for m, r in results.items() if r["interrupted"]["out_identical"] is False]
    missed = [m for m, r in results.items() if r["interrupted"]["out_identical"] is None]
    if missed:
        print(f"not interrupted (finished before the SIGTERM; try a smaller --at): {','.join(missed)}",
              file=sys.stderr)
    unstable = [m for m, r in results.items() if not r["uninterrupted_outputs_identical"]]
    if unstable:
        print(f"uninterrupted runs differ among themselves (plain vs --resume-dir): {','.join(unstable)}",
              file=sys.stderr)
    if bad:
        print(f"FAILED: the interrupted + resumed --out differs from the uninterrupted run's: {','.join(bad)}",
              file=sys.stderr)
    return 1 if bad or unstable else 0


if __name__ == "__main__":
    sys.exit(main())
