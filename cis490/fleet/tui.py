"""The status screen: a pure function of a spool snapshot (``snapshot.status``).

``render(snap)`` returns a rich renderable; tests render it to a string with
``Console(file=io.StringIO(), width=100)``. ``watch()`` redraws it on
filesystem events, with a polling fallback for network filesystems.
"""

from __future__ import annotations

import threading
import time

from rich.console import Group
from rich.table import Table
from rich.text import Text

from cis490.fleet import snapshot

STATE_STYLE = {"pending": "yellow", "claimed": "cyan", "done": "green", "failed": "red", "cancelled": "dim"}


def _fmt(x, spec: str = "", none: str = "–") -> str:
    if x is None:
        return none
    return format(x, spec) if spec else str(x)


def render(snap: dict):
    counts = snap["counts"]
    head = Text(f"spool {snap['spool']}  ({snap['consistency']})  ")
    for state, n in counts.items():
        head.append(f"{state} {n}  ", style=STATE_STYLE.get(state, ""))

    running = Table(title="running", title_justify="left", expand=True)
    for col in ("job", "host", "attempt", "epoch", "val macro F1", "heartbeat"):
        running.add_column(col)
    for r in snap["running"]:
        epoch = snapshot.epoch_cell(r)
        running.add_row(r["name"], _fmt(r.get("host_id")), _fmt(r.get("attempt")), epoch,
                        _fmt(r.get("val_macro_f1"), ".3f"), f"{r['heartbeat_age_s']:.0f}s ago")

    workers = Table(title="workers", title_justify="left", expand=True)
    for col in ("worker", "host", "live", "cores", "RAM GiB", "CUDA"):
        workers.add_column(col)
    for w in snap["workers"]:
        workers.add_row(_fmt(w["worker"]), _fmt(w["host_id"]),
                        Text("live", style="green") if w["live"] else Text(f"silent {w['age_s']:.0f}s", style="red"),
                        _fmt(w["cores"]), _fmt(w["ram_gib"]), "yes" if w["cuda"] else "no")

    parts = [head, running, workers]
    if snap.get("failures"):
        fails = Table(title="recent failures", title_justify="left", expand=True)
        fails.add_column("job")
        fails.add_column("error")
        for f in snap["failures"]:
            tail = [l for l in str(f.get("log_tail") or "").splitlines() if l.strip()][-2:]
            body = Text(str(f["error"])[-300:], style="red")
            for line in tail:
                body.append("\n  " + line[-200:], style="dim")
            fails.add_row(f["name"], body)
        parts.append(fails)
    models = Table(title=f"artifacts ({len(snap['models'])})", title_justify="left", expand=True)
    for col in ("model", "digest", "job", "size"):
        models.add_column(col)
    for m in snap["models"][-12:]:
        models.add_row(m["model_mode"], m["digest"][:12], _fmt(m["job"]),
                       f"{m['bundle_bytes'] / 1024:.1f} KiB" if m["bundle_bytes"] else "–")
    parts.append(models)
    return Group(*parts)


def watch(spool, poll_s: float = 2.0, stop: threading.Event | None = None) -> None:
    """Live view until Ctrl-C: redraw on watchdog events or every ``poll_s``."""
    from rich.live import Live

    from cis490.fleet.snapshot import status

    stop = stop or threading.Event()
    changed = threading.Event()
    observer = None
    try:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event):
                changed.set()

        observer = Observer()
        for d in ("pending", "claimed", "done", "failed", "cancelled", "attempts", "workers"):
            observer.schedule(Handler(), str(spool.root / d), recursive=(d == "attempts"))
        observer.daemon = True
        observer.start()
    except (ImportError, OSError):
        observer = None
    try:
        with Live(render(status(spool)), refresh_per_second=4, screen=False) as live:
            while not stop.is_set():
                changed.wait(timeout=poll_s)
                changed.clear()
                time.sleep(0.1)  # coalesce bursts of events
                live.update(render(status(spool)))
    except KeyboardInterrupt:
        pass
    finally:
        if observer is not None:
            observer.stop()
