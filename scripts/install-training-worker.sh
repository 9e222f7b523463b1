#!/usr/bin/env bash
# Enrol this Linux host as a cis490 training worker: run the worker's
# self-test against the spool, then install a systemd service (default) or a
# cron line (--cron). --dry-run prints what it would install and changes nothing.
#
#   scripts/install-training-worker.sh --spool /mnt/shared/spool [--host-id NAME]
#        [--slots N] [--cron] [--user USER] [--python PATH] [--dry-run]
set -euo pipefail

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

repo=$(cd "$(dirname "$0")/.." && pwd)
spool="${CIS490_SPOOL:-$repo/spool}"
host_id=$(hostname)
slots=""
mode=systemd
user=$(id -un)
python=""
dry_run=0
while [ $# -gt 0 ]; do
  case "$1" in
    --spool) spool=$2; shift 2 ;;
    --host-id) host_id=$2; shift 2 ;;
    --slots) slots=$2; shift 2 ;;
    --cron) mode=cron; shift ;;
    --user) user=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage ;;
    *) echo "install-training-worker: unknown argument $1" >&2; usage ;;
  esac
done
if [ -z "$python" ]; then
  if [ -x "$repo/.venv/bin/python" ]; then python="$repo/.venv/bin/python"; else python=$(command -v python3); fi
fi
case "$slots" in ''|*[!0-9]*) [ -z "$slots" ] || { echo "install-training-worker: --slots must be a number" >&2; exit 2; } ;; esac
given=$spool
spool=$(cd "$given" 2>/dev/null && pwd) || { echo "install-training-worker: spool $given does not exist (run cis490-spool init there first)" >&2; exit 1; }
slots_arg=""; [ -n "$slots" ] && slots_arg="--slots $slots"

echo "self-test: $python bin/cis490-spool --spool $spool work --self-test --host-id $host_id"
if ! "$python" "$repo/bin/cis490-spool" --spool "$spool" work --self-test --host-id "$host_id"; then
  echo "install-training-worker: self-test failed; nothing installed" >&2
  exit 1
fi

fill() {
  sed -e "s|@REPO@|$repo|g" -e "s|@PYTHON@|$python|g" -e "s|@SPOOL@|$spool|g" \
      -e "s|@HOST_ID@|$host_id|g" -e "s|@SLOTS_ARG@|$slots_arg|g" -e "s|@USER@|$user|g" \
      -e "s|@LOG@|$HOME/.cache/cis490-worker.log|g" "$1"
}

if [ "$mode" = systemd ]; then
  unit=/etc/systemd/system/cis490-training-worker.service
  if [ $dry_run = 1 ]; then
    echo "--- would write $unit:"
    fill "$repo/etc/cis490-training-worker.service"
    echo "--- would run: systemctl daemon-reload && systemctl enable --now cis490-training-worker.service"
    exit 0
  fi
  fill "$repo/etc/cis490-training-worker.service" > "$unit.tmp" && mv "$unit.tmp" "$unit"
  systemctl daemon-reload
  systemctl enable --now cis490-training-worker.service
  echo "installed $unit; follow it with: journalctl -fu cis490-training-worker"
else
  line=$(fill "$repo/etc/cis490-training-worker.cron" | grep -v '^#')
  if [ $dry_run = 1 ]; then
    echo "--- would add to $user's crontab:"
    echo "$line"
    exit 0
  fi
  { crontab -u "$user" -l 2>/dev/null | grep -v 'cis490-spool .* work --once' || true; echo "$line"; } | crontab -u "$user" -
  echo "installed the cron line for $user (crontab -l to see it)"
fi
