#!/usr/bin/env python3
"""Loopback network-filesystem test bed: one sshd, one export, two sshfs mounts.

    scripts/testbed/sshfs.py up   DIR [--profile nocache|nfslike|default]   → JSON on stdout
    scripts/testbed/sshfs.py down DIR
    scripts/testbed/sshfs.py status DIR

``up`` creates, under DIR (a throwaway fixture directory):

    keys/host_ed25519[.pub]   sshd host key (generated here)
    keys/user_ed25519[.pub]   client key; keys/authorized_keys holds its .pub
    sshd_config, ssh_config   nothing is read from /etc/ssh or ~/.ssh
    export/                   the one exported directory (the "server's disk")
    mnt/a, mnt/b              two sshfs mounts of export/: two client views,
                              two ssh connections, two sftp-server processes,
                              like two NFS clients of one server (-o reconnect)
    ssh-a.sh, ssh-a.pid       each mount's ssh_command: a wrapper that records
                              the ssh client's pid (``ssh_pid``), rewritten on
                              every reconnect — kill it to drop the connection
    state.json                ports, pids, mounts: what ``down`` undoes

sshd listens on a free 127.0.0.1 port picked at run time, with
``StrictModes no`` (the keys may sit under a world-writable /tmp) and an
``AuthorizedKeysFile`` inside DIR. ``/run/sshd`` (sshd's privilege-separation
directory) is created if missing.

Mount profiles (measured on loopback; docs/TESTBEDS.md):
  nocache  -o dir_cache=no,attr_timeout=0,entry_timeout=0,negative_timeout=0
  nfslike  -o dcache_timeout=3,attr_timeout=3,entry_timeout=3  (like NFS's attribute cache)
  default  sshfs's own defaults (~20 s listing/attribute cache)

``up`` is idempotent (a live bed with the same profile is reported again; a
broken one is torn down and rebuilt); ``down`` unmounts both views
(``fusermount -u``, lazily if busy) and stops sshd, and is a no-op on a
directory that is not up.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    BedError, free_port, pid_alive, read_state, run, stop_pid, tail, wait_until, which, write_state,
)

PROFILES = {
    "nocache": "dir_cache=no,attr_timeout=0,entry_timeout=0,negative_timeout=0",
    "nfslike": "dcache_timeout=3,attr_timeout=3,entry_timeout=3",
    "default": "",
}
VIEWS = ("a", "b")


def binaries() -> dict[str, str | None]:
    return {
        "sshd": which("sshd", "/usr/sbin", "/usr/local/sbin"),
        "ssh-keygen": which("ssh-keygen"),
        "sshfs": which("sshfs"),
        "fusermount": which("fusermount3") or which("fusermount"),
    }


def missing_binaries() -> list[str]:
    missing = [k for k, v in binaries().items() if v is None]
    if not os.path.exists("/dev/fuse"):
        missing.append("/dev/fuse")
    return missing


def is_mounted(path: Path) -> bool:
    target = os.path.realpath(path)
    try:
        with open("/proc/self/mounts") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 3 and parts[1].replace("\\040", " ") == target and "sshfs" in parts[2]:
                    return True
    except OSError:
        pass
    return False


def _keygen(path: Path, comment: str) -> None:
    if not path.exists():
        r = run([binaries()["ssh-keygen"], "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
        if r.returncode:
            raise BedError(f"ssh-keygen failed: {r.stderr.strip()}")


def _start_sshd(root: Path, user: str) -> tuple[int, int]:
    keys = root / "keys"
    keys.mkdir(exist_ok=True)
    _keygen(keys / "host_ed25519", "cis490-testbed-host")
    _keygen(keys / "user_ed25519", "cis490-testbed-user")
    (keys / "authorized_keys").write_text((keys / "user_ed25519.pub").read_text())
    os.chmod(keys / "authorized_keys", 0o600)
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir
    last_err = ""
    for _attempt in range(5):  # a free port can be taken between the probe and the bind
        port = free_port()
        cfg = root / "sshd_config"
        cfg.write_text("\n".join([
            f"ListenAddress 127.0.0.1:{port}",
            f"HostKey {keys / 'host_ed25519'}",
            f"PidFile {root / 'sshd.pid'}",
            f"AuthorizedKeysFile {keys / 'authorized_keys'}",
            "StrictModes no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            f"AllowUsers {user}",
            "UsePAM no",
            "X11Forwarding no",
            "AllowTcpForwarding no",
            "PrintMotd no",
            "UseDNS no",
            "MaxStartups 100",
            "MaxSessions 100",
            "LogLevel ERROR",
            "Subsystem sftp internal-sftp",
            "",
        ]))
        try:
            os.unlink(root / "sshd.pid")
        except FileNotFoundError:
            pass
        log = root / "sshd.log"
        # -D: no fork (its pid is ours to stop); -E: log to a file
        proc = subprocess.Popen([binaries()["sshd"], "-D", "-f", str(cfg), "-E", str(log)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            wait_until(lambda port=port, proc=proc: _port_open(port) or proc.poll() is not None, 10, "sshd to listen")
        except BedError:
            pass
        if proc.poll() is None and _port_open(port):
            return proc.pid, port
        stop_pid(proc.pid)
        last_err = tail(log)
    raise BedError(f"sshd did not start: {last_err.strip() or 'no log'}")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _mount(root: Path, view: str, port: int, user: str, profile: str) -> Path:
    mnt = root / "mnt" / view
    mnt.mkdir(parents=True, exist_ok=True)
    ssh_cfg = root / "ssh_config"
    ssh_cfg.write_text("\n".join([
        "Host *",
        f"  Port {port}",
        f"  User {user}",
        f"  IdentityFile {root / 'keys' / 'user_ed25519'}",
        "  IdentitiesOnly yes",
        "  BatchMode yes",
        "  StrictHostKeyChecking no",
        "  UserKnownHostsFile /dev/null",
        "  GlobalKnownHostsFile /dev/null",
        "  LogLevel ERROR",
        "  ServerAliveInterval 15",
        "",
    ]))
    # ssh runs through a wrapper that records its pid (ssh-<view>.pid; rewritten on each
    # reconnect): a test drops the mount's connection by killing it (``ssh_pid``)
    wrapper = root / f"ssh-{view}.sh"
    wrapper.write_text(f'#!/bin/sh\necho $$ > "{root / f"ssh-{view}.pid"}"\nexec ssh "$@"\n')
    wrapper.chmod(0o755)
    opts = ",".join(filter(None, [PROFILES[profile], "reconnect", f"ssh_command={wrapper}",
                                  f"fsname=cis490-testbed-{view}"]))
    cmd = [binaries()["sshfs"], f"{user}@127.0.0.1:{root / 'export'}", str(mnt), "-F", str(ssh_cfg), "-o", opts]
    r = run(cmd, timeout=30)  # sshfs daemonizes once the mount is up
    if r.returncode or not is_mounted(mnt):
        raise BedError(f"sshfs mount of view {view} failed (exit {r.returncode}): {r.stderr.strip()} "
                       f"| sshd log: {tail(root / 'sshd.log', 500).strip()}")
    return mnt


def ssh_pid(root: Path, view: str) -> int | None:
    """The pid of the ssh client that carries view ``view``'s mount now (None if gone)."""
    try:
        pid = int((root / f"ssh-{view}.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def _unmount(mnt: Path) -> None:
    fm = binaries()["fusermount"] or "fusermount"
    for args in (["-u"], ["-uz"]):
        if not is_mounted(mnt):
            return
        run([fm, *args, str(mnt)], timeout=30)
        if is_mounted(mnt):
            time.sleep(0.3)


def status(root: Path) -> dict | None:
    st = read_state(root)
    if not st:
        return None
    st["sshd_alive"] = pid_alive(st.get("sshd_pid"))
    st["mounted"] = {v: is_mounted(Path(p)) for v, p in st.get("mounts", {}).items()}
    st["healthy"] = st["sshd_alive"] and len(st["mounted"]) == 2 and all(st["mounted"].values())
    return st


def up(root: Path, profile: str) -> dict:
    root = root.absolute()
    missing = missing_binaries()
    if missing:
        raise BedError(f"sshfs test bed needs {', '.join(missing)} (Debian: apt-get install sshfs openssh-server)")
    root.mkdir(parents=True, exist_ok=True)
    st = status(root)
    if st and st["healthy"] and st.get("profile") == profile:
        return st
    if st:
        down(root)
    user = getpass.getuser()
    (root / "export").mkdir(exist_ok=True)
    state = {"bed": "sshfs", "root": str(root), "profile": profile, "options": PROFILES[profile],
             "export": str(root / "export"), "user": user, "mounts": {}}
    pid, port = _start_sshd(root, user)
    state.update(sshd_pid=pid, port=port)
    write_state(root, state)
    try:
        for v in VIEWS:
            state["mounts"][v] = str(_mount(root, v, port, user, profile))
            write_state(root, state)
    except BaseException:
        down(root)
        raise
    return status(root)


def down(root: Path) -> None:
    root = root.absolute()
    st = read_state(root) or {}
    mounts = [Path(p) for p in st.get("mounts", {}).values()]
    mounts += [root / "mnt" / v for v in VIEWS if root / "mnt" / v not in mounts]
    for m in mounts:
        _unmount(m)
    stop_pid(st.get("sshd_pid"))
    if (root / "state.json").exists():
        os.unlink(root / "state.json")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=("up", "down", "status"))
    ap.add_argument("dir", type=Path)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="nocache")
    args = ap.parse_args(argv)
    try:
        if args.action == "up":
            print(json.dumps(up(args.dir, args.profile), indent=1, sort_keys=True))
        elif args.action == "down":
            down(args.dir)
        else:
            st = status(args.dir.absolute())
            print(json.dumps(st, indent=1, sort_keys=True))
            return 0 if st and st["healthy"] else 1
    except BedError as exc:
        print(f"sshfs test bed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
