"""``cis490 replay``: one episode at wall-clock speed, true phase beside the prediction.

    cis490 replay --episode STORE/HOST/ID.tar.zst --model gbt_realistic [--spool SPOOL]
                  [--speed N] [--events]

The episode is decoded and cut into windows exactly as the feature and tensor
builders do; the model (the newest stored artifact of that model_mode in the
spool, or a checkpoint path) predicts each window; one line per window is
shown when its end time is reached (``--speed 10`` is ten times faster).

Live events instead of the seed's dashboard server: with ``--events`` every
window is also published as ``SPOOL/events/replay-<id>/<seq>.json`` — one
writer per file, each written atomically — for any consumer to read.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
import time
from pathlib import Path

from cis490.common import InputError, atomic_write

PHASE_STYLE = {"clean": "green", "armed": "yellow", "infecting": "magenta", "infected_running": "red"}


def register(sub) -> None:
    p = sub.add_parser("replay", help="replay one episode, true phase vs a model's prediction",
                       description=__doc__.split("\n\n")[0],
                       epilog="example: cis490 replay --episode demo-data/store/k-gamingcom/ID.tar.zst "
                              "--model gbt_oracle --spool spool --speed 20")
    p.add_argument("--episode", required=True, help="an episode tarball (.tar.zst)")
    p.add_argument("--model", required=True, help="MODEL_MODE (from the spool's store) or a checkpoint path")
    p.add_argument("--spool", default=os.environ.get("CIS490_SPOOL", "spool"))
    p.add_argument("--speed", type=float, default=1.0, help="1 = wall-clock speed; 0 = as fast as possible")
    p.add_argument("--events", action="store_true", help="also publish one event file per window into the spool")
    p.add_argument("--quiet", action="store_true", help="only the summary line")
    p.set_defaults(func=run)


def _checkpoint(model: str, spool: Path, workdir: Path) -> Path:
    """A checkpoint path: given directly, or the newest stored artifact of MODEL_MODE."""
    if Path(model).exists():
        return Path(model)
    from cis490.fleet import store

    dirs = [d for mm, d in store.iter_artifacts(spool) if mm == model and (d / "record.json").is_file()]
    if not dirs:
        raise InputError(f"no stored model {model!r} in {spool}/models (see `cis490-spool models`)")
    newest = max(dirs, key=lambda d: (d / "record.json").stat().st_mtime)
    store.extract(newest, workdir / newest.name)
    return workdir / newest.name


def windows_for(episode: Path, model_name: str, mode: str):
    """The episode's windows as the model consumes them: (X, y, t_end_ns, t0_ns)."""
    import numpy as np

    from cis490.data.channels import DEFAULT_WINDOW, REGISTRY
    from cis490.data.episode import read_episode
    from cis490.data.schema import feature_names
    from cis490.data.windows import episode_grid, grid_summary_stats, make_windows, window_ends
    from cis490.models.configs import SUMMARY_MODELS

    grid = episode_grid(read_episode(episode), REGISTRY)
    if model_name in SUMMARY_MODELS:
        ends = window_ends(grid.values.shape[1], DEFAULT_WINDOW, grid.labels)
        feats = grid_summary_stats(grid.values, ends, DEFAULT_WINDOW.length_s)
        every = feature_names(REGISTRY)
        cols = [every.index(n) for n in feature_names(REGISTRY, mode)]
        return feats[:, cols], grid.labels[ends - 1], grid.t0_wall_ns + ends * 10**9, grid.t0_wall_ns
    x, y, t_end = make_windows(grid, DEFAULT_WINDOW)
    n_ch = len(REGISTRY.channels_for(mode))  # realistic channels are a prefix of oracle's
    return np.ascontiguousarray(x[:, :n_ch, :], dtype=np.float32), y, t_end, grid.t0_wall_ns


def run(args) -> int:
    from rich.console import Console
    from rich.text import Text

    from cis490.data.channels import DEFAULT_WINDOW, PHASES, REGISTRY
    from cis490.data.schema import schema_bytes
    from cis490.models import load

    console = Console()
    spool = Path(args.spool).absolute()
    with tempfile.TemporaryDirectory(prefix="cis490-replay-") as tmp:
        ckpt = _checkpoint(args.model, spool, Path(tmp))
        expected = hashlib.sha256(schema_bytes(REGISTRY, DEFAULT_WINDOW)).hexdigest()
        model = load(ckpt, expect_schema_sha256=expected)
        name, mode = _model_mode(ckpt)
        X, y, t_end, t0 = windows_for(Path(args.episode), name, mode)
        proba = model.predict_proba(X)
    pred = proba.argmax(1)
    events_dir = None
    if args.events:
        from cis490.fleet.attempts import real_dir

        real_dir(spool, spool / "events")
        events_dir = real_dir(spool, spool / "events" / f"replay-{os.getpid()}-{secrets.token_hex(3)}")
    if not args.quiet:
        console.print(f"replaying {Path(args.episode).name} with {name}_{mode} ({len(y)} windows, "
                      f"{DEFAULT_WINDOW.stride_s} s apart, speed {args.speed:g}×)")
    start = time.monotonic()
    for i in range(len(y)):
        due = (t_end[i] - t_end[0]) / 1e9 / args.speed if args.speed > 0 else 0.0
        if (wait := due - (time.monotonic() - start)) > 0:
            time.sleep(wait)
        true, guess = PHASES[int(y[i])], PHASES[int(pred[i])]
        if not args.quiet:
            line = Text(f"t+{(t_end[i] - t0) / 1e9:6.0f}s  true ")
            line.append(f"{true:<17}", style=PHASE_STYLE[true])
            line.append(" predicted ")
            line.append(f"{guess:<17}", style=PHASE_STYLE[guess])
            line.append(f" p={proba[i, pred[i]]:.2f} ")
            line.append("✓" if true == guess else "✗", style="green" if true == guess else "red bold")
            console.print(line)
        if events_dir is not None:
            atomic_write(events_dir / f"{i:08d}.json",
                         json.dumps({"type": "replay", "episode": Path(args.episode).name,
                                     "model": f"{name}_{mode}", "t_end_ns": int(t_end[i]), "true": true,
                                     "predicted": guess, "proba": [round(float(p), 4) for p in proba[i]]}),
                         tmp_dir=spool / "tmp", durable=False)
    acc = float((pred == y).mean()) if len(y) else float("nan")
    print(f"replay: {len(y)} windows, {int((pred == y).sum())} predicted right ({acc:.1%})"
          + (f"; events in {events_dir}" if events_dir else ""))
    return 0


def _model_mode(ckpt: Path) -> tuple[str, str]:
    from cis490.models.checkpoint import find_checkpoint

    meta = json.loads(find_checkpoint(ckpt).read_text())
    return meta["model"], meta["mode"]
