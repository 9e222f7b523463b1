#!/usr/bin/env python3
"""Loopback Syncthing test bed: two instances sharing one folder.

    scripts/testbed/syncthing.py up   DIR [--rescan-s 10] [--watch-delay-s 1]   → JSON on stdout
    scripts/testbed/syncthing.py down DIR
    scripts/testbed/syncthing.py status DIR
    scripts/testbed/syncthing.py wait-sync DIR [--timeout 60]

``up`` creates, under DIR:

    homes/a, homes/b        each instance's config, keys and database
                            (``syncthing generate --no-default-folder --skip-port-probing``)
    folders/a, folders/b    the shared folder (id ``spool``), one copy per instance
    state.json              ports, API keys, device ids, pids: what ``down`` undoes

Each ``config.xml`` is patched before the first start: sync listen address
``tcp://127.0.0.1:PORT`` and GUI/REST address ``127.0.0.1:PORT`` on free
loopback ports picked at run time, an API key, global/local announce, relays,
NAT traversal and crash reporting off, ``urAccepted=-1`` (usage reporting
refused), ``autoUpgradeIntervalH=0``. Instances start with
``STNOUPGRADE=1 STNORESTART=1 STHASHING=minio``, each in its own process
group (Syncthing may run a monitor plus a worker process: both are stopped).

Only instance a dials: it knows b at ``tcp://127.0.0.1:PORT_B``; b lists a
as ``dynamic`` and, with discovery off, never dials — two sides dialling each
other at once can stall for ~20 s. The folder is shared send-receive with
``fsWatcherDelayS`` and ``rescanIntervalS`` as given. ``up`` returns when the
two are connected and the folder is idle on both; it is idempotent, and
``down`` (a no-op on a directory that is not up) shuts both down (REST
``/rest/system/shutdown``, then SIGTERM/SIGKILL of each process group).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    BedError, free_ports, pid_alive, read_state, run, stop_pid, tail, wait_until, which, write_state,
)

SIDES = ("a", "b")
FOLDER_ID = "spool"
# Never compared between the two copies: Syncthing's own files and temporaries.
SYNCTHING_NOISE = (".stfolder", ".stignore", ".stversions")


def binary() -> str | None:
    return which("syncthing")


def missing_binaries() -> list[str]:
    return [] if binary() else ["syncthing"]


# --- REST --------------------------------------------------------------------------


def rest(state: dict, side: str, path: str, method: str = "GET", timeout: float = 5.0):
    s = state["sides"][side]
    req = urllib.request.Request(f"http://127.0.0.1:{s['gui_port']}{path}", method=method,
                                 headers={"X-API-Key": s["api_key"]})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        body = resp.read()
    return json.loads(body) if body.strip() else None


def connected(state: dict) -> bool:
    try:
        a = rest(state, "a", "/rest/system/connections")["connections"]
        b = rest(state, "b", "/rest/system/connections")["connections"]
    except (OSError, urllib.error.URLError, ValueError, KeyError):
        return False
    ida, idb = state["sides"]["a"]["device_id"], state["sides"]["b"]["device_id"]
    return bool(a.get(idb, {}).get("connected") and b.get(ida, {}).get("connected"))


def folder_status(state: dict, side: str) -> dict:
    return rest(state, side, f"/rest/db/status?folder={FOLDER_ID}")


def idle(state: dict) -> bool:
    try:
        statuses = [folder_status(state, s) for s in SIDES]
        return all(st.get("state") == "idle" and st.get("needTotalItems", 0) == 0 for st in statuses)
    except (OSError, urllib.error.URLError, ValueError):
        return False


def tree(folder: Path, ignore=None) -> dict[str, tuple[int, int]]:
    """relative path → (size, whole-second mtime) of every file, minus Syncthing's own."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        rel_dir = os.path.relpath(dirpath, folder)
        dirnames[:] = [d for d in dirnames if d not in SYNCTHING_NOISE
                       and not (ignore and ignore(os.path.normpath(os.path.join(rel_dir, d))))]
        for f in filenames:
            rel = os.path.normpath(os.path.join(rel_dir, f))
            if f in SYNCTHING_NOISE or f.startswith((".syncthing.", "~syncthing~")) or (ignore and ignore(rel)):
                continue
            try:
                st = os.lstat(os.path.join(dirpath, f))
            except FileNotFoundError:
                continue
            out[rel] = (st.st_size, int(st.st_mtime))
    return out


def wait_sync(state: dict, timeout: float = 60.0, ignore=None) -> float:
    """Wait until both copies hold the same files and both sides are idle; → seconds waited."""
    t0 = time.monotonic()
    fa, fb = (Path(state["sides"][s]["folder"]) for s in SIDES)

    def same():
        return tree(fa, ignore) == tree(fb, ignore) and idle(state)

    try:
        wait_until(same, timeout, "the two Syncthing copies to converge", step=0.2)
    except BedError:
        ta, tb = tree(fa, ignore), tree(fb, ignore)
        diff = sorted(set(ta.items()) ^ set(tb.items()))[:10]
        raise BedError(f"Syncthing copies differ after {timeout:g}s: {diff}") from None
    return time.monotonic() - t0


# --- config --------------------------------------------------------------------------


def _set(parent: ET.Element, tag: str, text: str) -> None:
    el = parent.find(tag)
    if el is None:
        el = ET.SubElement(parent, tag)
    el.text = text


def _device(parent: ET.Element, device_id: str, name: str, address: str) -> None:
    d = ET.SubElement(parent, "device", {"id": device_id, "name": name, "compression": "metadata",
                                         "introducer": "false", "skipIntroductionRemovals": "false",
                                         "introducedBy": ""})
    ET.SubElement(d, "address").text = address
    ET.SubElement(d, "paused").text = "false"
    ET.SubElement(d, "autoAcceptFolders").text = "false"


def patch_config(home: Path, *, me: dict, peer: dict, peer_address: str, folder: Path,
                 rescan_s: int, watch_delay_s: int) -> None:
    path = home / "config.xml"
    tree_ = ET.parse(path)
    root = tree_.getroot()
    for el in list(root):
        if el.tag == "folder" or (el.tag == "device" and el.get("id") != me["device_id"]):
            root.remove(el)
    for el in root.findall("device"):
        el.set("name", me["name"])
        for a in el.findall("address"):
            el.remove(a)
        ET.SubElement(el, "address").text = "dynamic"
    _device(root, peer["device_id"], peer["name"], peer_address)

    gui = root.find("gui")
    gui.set("enabled", "true")
    gui.set("tls", "false")
    _set(gui, "address", f"127.0.0.1:{me['gui_port']}")
    _set(gui, "apikey", me["api_key"])

    opts = root.find("options")
    for el in opts.findall("listenAddress"):
        opts.remove(el)
    ET.SubElement(opts, "listenAddress").text = f"tcp://127.0.0.1:{me['sync_port']}"
    for tag, text in (("globalAnnounceEnabled", "false"), ("localAnnounceEnabled", "false"),
                      ("relaysEnabled", "false"), ("natEnabled", "false"),
                      ("crashReportingEnabled", "false"), ("urAccepted", "-1"), ("urSeen", "3"),
                      ("autoUpgradeIntervalH", "0"), ("startBrowser", "false"),
                      ("reconnectionIntervalS", "2"), ("restartOnWakeup", "false"),
                      ("setLowPriority", "false"), ("minHomeDiskFree", "0")):
        _set(opts, tag, text)
    opts.find("minHomeDiskFree").set("unit", "%")
    unacked = opts.find("unackedNotificationID")
    if unacked is not None:
        opts.remove(unacked)

    f = ET.SubElement(root, "folder", {
        "id": FOLDER_ID, "label": FOLDER_ID, "path": str(folder), "type": "sendreceive",
        "rescanIntervalS": str(rescan_s), "fsWatcherEnabled": "true", "fsWatcherDelayS": str(watch_delay_s),
        "ignorePerms": "false", "autoNormalize": "true"})
    ET.SubElement(f, "filesystemType").text = "basic"
    for dev in (me, peer):
        ET.SubElement(f, "device", {"id": dev["device_id"], "introducedBy": ""})
    md = ET.SubElement(f, "minDiskFree", {"unit": "%"})
    md.text = "0"
    ET.SubElement(f, "markerName").text = ".stfolder"
    ET.SubElement(f, "maxConflicts").text = "10"
    tree_.write(path, encoding="unicode")


# --- lifecycle ------------------------------------------------------------------------


def _env() -> dict:
    env = dict(os.environ)
    env.update(STNOUPGRADE="1", STNORESTART="1", STHASHING="minio", STNODEFAULTFOLDER="1",
               STNOUSAGEREPORTING="1")
    return env


def status(root: Path) -> dict | None:
    st = read_state(root)
    if not st:
        return None
    st["alive"] = {s: pid_alive(st["sides"][s].get("pid")) for s in SIDES}
    st["connected"] = all(st["alive"].values()) and connected(st)
    st["healthy"] = st["connected"]
    return st


def up(root: Path, *, rescan_s: int = 10, watch_delay_s: int = 1, timeout: float = 60.0) -> dict:
    root = root.absolute()
    if missing_binaries():
        raise BedError("the Syncthing test bed needs the syncthing binary (Debian: apt-get install syncthing)")
    root.mkdir(parents=True, exist_ok=True)
    st = status(root)
    if st and st["healthy"] and st.get("rescan_s") == rescan_s and st.get("watch_delay_s") == watch_delay_s:
        return st
    if st:
        down(root)
    exe = binary()
    ports = free_ports(4)
    sides = {}
    for i, s in enumerate(SIDES):
        home = root / "homes" / s
        folder = root / "folders" / s
        (folder / ".stfolder").mkdir(parents=True, exist_ok=True)
        if not (home / "config.xml").exists():
            r = run([exe, "generate", f"--home={home}", "--no-default-folder", "--skip-port-probing"],
                    env=_env(), timeout=60)
            if r.returncode:
                raise BedError(f"syncthing generate failed: {r.stderr.strip() or r.stdout.strip()}")
        r = run([exe, "serve", f"--home={home}", "--device-id"], env=_env(), timeout=30)
        if r.returncode or not r.stdout.strip():
            raise BedError(f"syncthing --device-id failed: {r.stderr.strip()}")
        sides[s] = {"name": f"cis490-{s}", "home": str(home), "folder": str(folder),
                    "device_id": r.stdout.strip().splitlines()[-1].strip(),
                    "gui_port": ports[2 * i], "sync_port": ports[2 * i + 1],
                    "api_key": secrets.token_urlsafe(24)}
    a, b = sides["a"], sides["b"]
    # only a dials b; b waits for a (a is "dynamic" there and discovery is off)
    patch_config(Path(a["home"]), me=a, peer=b, peer_address=f"tcp://127.0.0.1:{b['sync_port']}",
                 folder=Path(a["folder"]), rescan_s=rescan_s, watch_delay_s=watch_delay_s)
    patch_config(Path(b["home"]), me=b, peer=a, peer_address="dynamic",
                 folder=Path(b["folder"]), rescan_s=rescan_s, watch_delay_s=watch_delay_s)
    state = {"bed": "syncthing", "root": str(root), "folder_id": FOLDER_ID, "rescan_s": rescan_s,
             "watch_delay_s": watch_delay_s, "sides": sides}
    t0 = time.monotonic()
    try:
        for s in ("b", "a"):  # the listener first
            home = Path(sides[s]["home"])
            log = open(home / "syncthing.log", "ab")
            proc = subprocess.Popen([exe, "serve", f"--home={home}", "--no-browser", "--no-restart",
                                     f"--logfile={home / 'syncthing.log'}"],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env=_env(), start_new_session=True)
            log.close()
            sides[s]["pid"] = proc.pid
            write_state(root, state)
        for s in SIDES:
            wait_until(lambda s=s: rest(state, s, "/rest/system/ping"), timeout, f"syncthing {s}'s REST API")
        wait_until(lambda: connected(state), timeout, "the two Syncthing instances to connect")
        wait_until(lambda: idle(state), timeout, "the shared folder to be idle on both sides")
    except BaseException as exc:
        logs = " | ".join(f"{s}: {tail(Path(sides[s]['home']) / 'syncthing.log', 600).strip()}" for s in SIDES)
        down(root)
        if isinstance(exc, BedError):
            raise BedError(f"{exc}; logs: {logs}") from None
        raise
    state["up_s"] = round(time.monotonic() - t0, 2)
    write_state(root, state)
    return status(root)


def down(root: Path) -> None:
    root = root.absolute()
    st = read_state(root)
    if not st:
        return
    for s in SIDES:
        side = st["sides"].get(s, {})
        if side.get("pid") and pid_alive(side["pid"]):
            try:
                rest(st, s, "/rest/system/shutdown", method="POST", timeout=3)
            except (OSError, urllib.error.URLError, ValueError):
                pass
    for s in SIDES:
        pid = st["sides"].get(s, {}).get("pid")
        if pid:
            stop_pid(pid, group=True, grace=10)
    os.unlink(root / "state.json")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=("up", "down", "status", "wait-sync"))
    ap.add_argument("dir", type=Path)
    ap.add_argument("--rescan-s", type=int, default=10)
    ap.add_argument("--watch-delay-s", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args(argv)
    try:
        if args.action == "up":
            print(json.dumps(up(args.dir, rescan_s=args.rescan_s, watch_delay_s=args.watch_delay_s,
                                timeout=args.timeout), indent=1, sort_keys=True))
        elif args.action == "down":
            down(args.dir)
        elif args.action == "wait-sync":
            st = read_state(args.dir.absolute())
            if not st:
                raise BedError(f"{args.dir} is not up")
            print(f"in sync after {wait_sync(st, args.timeout):.2f}s")
        else:
            st = status(args.dir.absolute())
            print(json.dumps(st, indent=1, sort_keys=True))
            return 0 if st and st["healthy"] else 1
    except BedError as exc:
        print(f"syncthing test bed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
