"""Re-measure the Syncthing facts the eventual mode relies on."""

from __future__ import annotations

import os
import statistics
import time

import pytest

from .conftest import record_fact, seconds_until

pytestmark = pytest.mark.syncthing


def test_new_file_mtime_change_and_rename_propagate(syncthing_pair):
    a, b = syncthing_pair.a, syncthing_pair.b
    new_file = []
    for i, (src, dst) in enumerate([(a, b), (b, a), (a, b), (b, a)]):
        (src / f"n{i}.json").write_text(f"file {i}")
        new_file.append(seconds_until(lambda dst=dst, i=i: (dst / f"n{i}.json").exists()))
    # mtime-only change (a heartbeat)
    syncthing_pair.wait_sync(30)
    target = int(time.time()) + 100
    os.utime(a / "n0.json", (target, target))
    mtime_only = seconds_until(lambda: int(os.stat(b / "n0.json").st_mtime) == target)
    # rename: the new name appears and the old one goes
    seen = []
    os.makedirs(a / "claimed", exist_ok=True)
    syncthing_pair.wait_sync(30)
    os.rename(a / "n2.json", a / "claimed" / "n2@w.json")

    def renamed():
        new, old = (b / "claimed" / "n2@w.json").exists(), (b / "n2.json").exists()
        seen.append((new, old))
        return new and not old
    rename = seconds_until(renamed)
    fig = {"new_file_s": [round(x, 2) if x is not None else None for x in new_file],
           "mtime_only_s": round(mtime_only, 2) if mtime_only is not None else None,
           "rename_s": round(rename, 2) if rename is not None else None,
           "rename_seen_new_and_old_together": any(n and o for n, o in seen)}
    record_fact("syncthing_propagation", fig)
    assert all(x is not None and x < 5 for x in new_file), fig
    assert statistics.median(new_file) < 3, fig
    assert mtime_only is not None and mtime_only < 5, fig
    assert rename is not None and rename < 5, fig


def test_a_file_touched_faster_than_the_watcher_delay_is_held_back(syncthing_pair):
    """Syncthing's watcher waits until a path is quiet for fsWatcherDelayS (1 s here), but at
    most ~6 x that: a claim heartbeated every 0.2 s reaches the other side only after ~6 s,
    an untouched one after ~1 s. This bounds settle_s from below in eventual mode."""
    a, b = syncthing_pair.a, syncthing_pair.b

    def propagation(period: float | None) -> float | None:
        name = f"t-{period}-{time.monotonic_ns()}"
        t0 = time.monotonic()
        (a / name).write_text("claim")
        nxt = t0 + (period or 1e9)
        while not (b / name).exists():
            if time.monotonic() >= nxt:
                os.utime(a / name, None)
                nxt += period
            if time.monotonic() - t0 > 30:
                return None
            time.sleep(0.02)
        return time.monotonic() - t0

    quiet = [propagation(None) for _ in range(2)]
    busy = [propagation(0.2) for _ in range(2)]
    fig = {"untouched_s": [round(x, 2) if x else None for x in quiet],
           "touched_every_0.2s_s": [round(x, 2) if x else None for x in busy],
           "fsWatcherDelayS": syncthing_pair.state["watch_delay_s"]}
    record_fact("syncthing_watcher_holds_back_busy_files", fig)
    assert all(x is not None and x < 3 for x in quiet), fig
    assert all(x is not None and x < 15 for x in busy), fig
