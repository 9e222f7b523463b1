"""Re-measure the sshfs facts the atomic mode relies on (docs/TESTBEDS.md).

Each test records its figures in bench/out/netfs_facts.json.
"""

from __future__ import annotations

import errno
import multiprocessing as mp
import os
import time
from collections import Counter

import pytest

from .conftest import record_fact, seconds_until

pytestmark = pytest.mark.netfs

RACE_TRIES = 50


def _racer(view: str, side: str, tries: int, kind: str, barrier, out) -> None:
    results = []
    for i in range(tries):
        src = os.path.join(view, "race", f"{i}.src")
        barrier.wait()
        try:
            if kind == "rename":
                os.rename(src, os.path.join(view, "race", f"{i}.{side}"))
            elif kind == "excl":
                os.close(os.open(os.path.join(view, "race", f"{i}.excl"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            elif kind == "link":
                os.link(src, os.path.join(view, "race", f"{i}.link"))
            results.append(0)
        except OSError as exc:
            results.append(exc.errno)
        barrier.wait()  # the parent prepares the next try
        barrier.wait()
    out.put((side, results))


def _race(pair, kind: str, tries: int) -> dict:
    race = pair.export / "race"
    race.mkdir()
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(3)
    out = ctx.Queue()
    procs = [ctx.Process(target=_racer, args=(str(v), s, tries, kind, barrier, out))
             for v, s in ((pair.a, "a"), (pair.b, "b"))]
    for p in procs:
        p.start()
    for i in range(tries):
        (race / f"{i}.src").write_text(f"job {i}")  # on the server, as the spool's enqueue would be
        barrier.wait()  # go
        barrier.wait()  # both done
        barrier.wait()  # next
    results = dict(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    winners = [sum(1 for s in "ab" if results[s][i] == 0) for i in range(tries)]
    loser_errnos = Counter(errno.errorcode.get(results[s][i], str(results[s][i]))
                           for i in range(tries) for s in "ab" if results[s][i] != 0)
    return {"tries": tries, "one_winner": winners.count(1), "two_winners": winners.count(2),
            "no_winner": winners.count(0), "loser_errno": dict(loser_errnos),
            "a_won": sum(1 for i in range(tries) if results["a"][i] == 0)}


def test_rename_race_from_two_mounts_has_exactly_one_winner(sshfs_pair):
    r = _race(sshfs_pair, "rename", RACE_TRIES)
    record_fact(f"sshfs_{sshfs_pair.profile}_rename_race", r)
    assert r["one_winner"] == RACE_TRIES, r
    assert r["loser_errno"] == {"ENOENT": RACE_TRIES}, r
    # the server holds exactly one destination per try, and no source
    names = sorted(os.listdir(sshfs_pair.export / "race"))
    assert not [n for n in names if n.endswith(".src")]
    assert len(names) == RACE_TRIES


def test_exclusive_create_and_link_races_have_one_winner(sshfs_nocache):
    excl = _race(sshfs_nocache, "excl", 20)
    os.rename(sshfs_nocache.export / "race", sshfs_nocache.export / "race-excl")
    link = _race(sshfs_nocache, "link", 20)
    record_fact("sshfs_nocache_excl_race", excl)
    record_fact("sshfs_nocache_link_race", link)
    assert excl["one_winner"] == 20 and link["one_winner"] == 20, (excl, link)
    # the loser's errno is NOT reliably EEXIST on sshfs (EPERM was seen)
    assert set(excl["loser_errno"]) <= {"EEXIST", "EPERM"} and set(link["loser_errno"]) <= {"EEXIST", "EPERM"}


def test_listing_and_attribute_staleness_per_profile(sshfs_pair):
    """A file renamed away on view a: how long does view b still list it / keep old attributes?"""
    a, b = sshfs_pair.a, sshfs_pair.b
    bound = {"nocache": 0.5, "nfslike": 8.0}[sshfs_pair.profile]
    listing, open_enoent, attrs = [], [], []
    for i in range(2):
        d = f"d{i}"
        (a / d).mkdir()
        (a / d / "x.json").write_text("x")
        time.sleep(0.1)
        assert "x.json" in os.listdir(b / d)            # b's listing (and entry) is now cached
        old = os.stat(b / d / "x.json").st_mtime
        os.rename(a / d / "x.json", a / d / "y.json")
        listing.append(seconds_until(lambda d=d: "x.json" not in os.listdir(b / d), 30))

        def open_fails(d=d):
            try:
                open(b / d / "x.json").close()
                return False
            except FileNotFoundError:
                return True
        open_enoent.append(seconds_until(open_fails, 30))
        # attribute staleness: a changes the mtime; when does b see it?
        (a / d / "z.json").write_text("z")
        os.stat(b / d / "z.json")                        # cache z's attributes on b
        target = old - 1000
        os.utime(a / d / "z.json", (target, target))
        attrs.append(seconds_until(lambda d=d, target=target: abs(os.stat(b / d / "z.json").st_mtime - target) < 1,
                                   30))
    fig = {"profile": sshfs_pair.profile, "options": sshfs_pair.options,
           "renamed_file_still_listed_s": [round(x, 2) if x is not None else None for x in listing],
           "open_enoent_after_s": [round(x, 2) if x is not None else None for x in open_enoent],
           "old_mtime_seen_s": [round(x, 2) if x is not None else None for x in attrs]}
    record_fact(f"sshfs_{sshfs_pair.profile}_staleness", fig)
    assert all(x is not None and x <= bound for x in listing), fig
    assert all(x is not None and x <= bound for x in attrs), fig
    if sshfs_pair.profile == "nocache":
        assert max(listing) < 0.5 and max(attrs) < 0.5, fig


def test_per_operation_latency_without_cache(sshfs_nocache):
    a = sshfs_nocache.a
    (a / "f").write_text("x")
    n = 200
    t0 = time.perf_counter()
    for _ in range(n):
        os.stat(a / "f")
    stat_ms = (time.perf_counter() - t0) / n * 1000
    t0 = time.perf_counter()
    for _i in range(n // 2):
        os.rename(a / "f", a / "g")
        os.rename(a / "g", a / "f")
    rename_ms = (time.perf_counter() - t0) / n * 1000
    t0 = time.perf_counter()
    for _ in range(n):
        os.utime(a / "f", None)
    utime_ms = (time.perf_counter() - t0) / n * 1000
    record_fact("sshfs_nocache_latency_ms", {"stat": round(stat_ms, 3), "rename": round(rename_ms, 3),
                                              "utime": round(utime_ms, 3)})
    assert stat_ms < 50 and rename_ms < 50 and utime_ms < 50


def test_utime_stamping_and_mtime_resolution(sshfs_nocache):
    """``utime(path, None)`` on sshfs: stamped 'now' with 1 s resolution (by the client's clock,
    see the faketime test); creation is stamped by the server."""
    a, export = sshfs_nocache.a, sshfs_nocache.export
    samples = []
    for i in range(5):
        p = a / f"u{i}"
        t0 = time.time()
        p.write_text("x")
        created = os.stat(p).st_mtime_ns
        time.sleep(0.3)
        t1 = time.time()
        os.utime(p, None)
        t2 = time.time()
        touched = os.stat(p).st_mtime_ns
        on_server = os.stat(export / f"u{i}").st_mtime_ns
        samples.append({"created_minus_t0_s": round(created / 1e9 - t0, 3),
                        "touched_minus_t1_s": round(touched / 1e9 - t1, 3),
                        "touched_ns_mod_1e9": touched % 10**9, "server_equals_view": on_server == touched})
        assert touched % 10**9 == 0, "sshfs mtimes have 1 s resolution"
        assert int(t1) - 1 <= touched / 1e9 <= t2 + 1
        assert on_server == touched
    record_fact("sshfs_nocache_utime", {"samples": samples, "resolution_s": 1})


def test_utime_is_stamped_by_the_client_clock(sshfs_nocache):
    """A third view whose sshfs process runs with a +3600 s clock (libfaketime) stamps
    ``utime(None)`` +3600 s ahead, while file creation keeps the server's clock."""
    import shutil
    import subprocess

    faketime = shutil.which("faketime")
    if not faketime:
        pytest.fail("needs the faketime binary: `make test` installs it (scripts/testbed-packages)")
    bed = sshfs_nocache
    mnt = bed.root / "mnt" / "skewed"
    mnt.mkdir()
    cmd = [faketime, "-f", "+3600s", "sshfs", f"{bed.state['user']}@127.0.0.1:{bed.export}", str(mnt),
           "-F", str(bed.root / "ssh_config"), "-o", bed.options]
    # foreground (-f): under libfaketime the daemonizing parent never returns
    proc = subprocess.Popen(cmd + ["-f"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 20
    while not sshfs_bed().is_mounted(mnt) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    if not sshfs_bed().is_mounted(mnt):
        proc.kill()
        pytest.fail("sshfs under faketime did not mount")
    try:
        p = mnt / "skew"
        p.write_text("x")
        created = os.stat(bed.export / "skew").st_mtime - time.time()
        os.utime(p, None)
        touched = os.stat(bed.export / "skew").st_mtime - time.time()
    finally:
        subprocess.run([sshfs_bed().binaries()["fusermount"] or "fusermount", "-u", str(mnt)],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    record_fact("sshfs_skewed_client_utime", {"client_skew_s": 3600, "created_minus_now_s": round(created, 1),
                                               "utime_minus_now_s": round(touched, 1)})
    assert abs(created) < 2, "creation is stamped by the server's clock"
    assert abs(touched - 3600) < 2, "utime(None) is stamped by the client's clock"


def sshfs_bed():
    from .conftest import sshfs_bed as bed

    return bed
