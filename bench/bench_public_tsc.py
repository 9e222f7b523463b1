"""Every model at its defaults on public UCR/UEA datasets, beside published accuracies.

    .venv/bin/python bench/bench_public_tsc.py [--datasets GunPoint,ItalyPowerDemand,BasicMotions]
                                               [--models cnn,gru,...] [--seed 0] [--json OUT]

A benchmark, not a tuning loop: each model in ``cis490.models.configs.CONFIGS``
(a newly registered model appears by itself) is created with its default
hyper through the public API, ``cis490.models.create(name, ...)``, fitted on
the dataset's train split minus a validation fifth and scored on the test
split (accuracy = argmax of ``predict_proba``):

- data: ``aeon.datasets`` (offline copies shipped with aeon; the optional
  extra ``minirocket``), the archives' own train/test splits;
- validation: a stratified fifth of train, ``sklearn.model_selection.
  train_test_split(test_size=0.2, stratify=y, random_state=seed)``, seed 0;
- sequence models get ``(n, channels, steps)`` float32; summary models
  (``SUMMARY_MODELS``: gbt, mlp) get each series flattened into one row of
  ``channels x steps`` raw values (the input of Wang et al.'s MLP baseline);
- one training seed (``--seed``, default 0), ``threads = 1``.

Published figures (test accuracy, the archives' default split unless said;
docs/MODELS.md says which source each one is from):

- FCN, ResNet: Wang, Yan & Oates (2017), "Time series classification from
  scratch with deep neural networks: A strong baseline", IJCNN, Table 2 (test
  error; accuracy = 1 - error; one run); in brackets the mean of 10 runs in
  Fawaz, Forestier, Weber, Idoumghar & Muller (2019), "Deep learning for time
  series classification: a review", DMKD 33(4) (hfawaz/dl-4-tsc,
  results/results-uea-avg-std.csv).
- MiniRocket: Dempster, Schmidt & Webb (2021), "MINIROCKET: A Very Fast
  (Almost) Deterministic Transform for Time Series Classification", KDD
  (angus924/minirocket, results/accuracy_ucr109_resamples.csv: resample 0 =
  the default split; in brackets the mean of 30 resamples).
- BasicMotions (UEA): Ruiz, Flynn, Large, Middlehurst & Bagnall (2021), "The
  great multivariate time series classification bake off", DMKD 35(2):
  ResNet 1.00; neither FCN nor MiniRocket is in a published BasicMotions
  table we could check (the 1.00 shown for them is what every strong
  classifier there scores, marked "~").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

DATASETS = ("GunPoint", "ItalyPowerDemand", "BasicMotions")
LOADERS = {"GunPoint": "load_gunpoint", "ItalyPowerDemand": "load_italy_power_demand",
           "BasicMotions": "load_basic_motions"}

# (accuracy, second figure or None, note); see the module doc for the sources
PUBLISHED = {
    "GunPoint": {"FCN": (1.000, 1.000, "Wang 2017 error 0.000; Fawaz 2019 mean 100.0"),
                 "ResNet": (0.993, 0.991, "Wang 2017 error 0.007; Fawaz 2019 mean 99.1"),
                 "MiniRocket": (0.993, 0.992, "Dempster 2021 split 0; mean of 30 0.992")},
    "ItalyPowerDemand": {"FCN": (0.970, 0.961, "Wang 2017 error 0.030; Fawaz 2019 mean 96.1"),
                         "ResNet": (0.960, 0.963, "Wang 2017 error 0.040; Fawaz 2019 mean 96.3"),
                         "MiniRocket": (0.969, 0.960, "Dempster 2021 split 0; mean of 30 0.960")},
    "BasicMotions": {"FCN": (1.000, None, "~ not published for BasicMotions"),
                     "ResNet": (1.000, None, "Ruiz 2021"),
                     "MiniRocket": (1.000, None, "~ not published for BasicMotions")},
}


def load(name: str, seed: int):
    """``(X_train, y_train, X_val, y_val, X_test, y_test, classes)``; X float32 (n, C, T)."""
    from aeon import datasets
    from sklearn.model_selection import train_test_split

    loader = getattr(datasets, LOADERS[name])
    X, y = loader(split="train")
    X_test, y_test = loader(split="test")
    classes = sorted(set(y.tolist()))
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[c] for c in y.tolist()], dtype=np.int64)
    y_test = np.array([index[c] for c in y_test.tolist()], dtype=np.int64)
    X_tr, X_val, y_tr, y_val = train_test_split(
        np.asarray(X, dtype=np.float32), y, test_size=0.2, stratify=y, random_state=seed)
    return X_tr, y_tr, X_val, y_val, np.asarray(X_test, dtype=np.float32), y_test, classes


def run_one(model: str, data, seed: int) -> dict:
    """Fit ``model`` at its defaults on ``data``; test accuracy, fit seconds, budget."""
    from cis490 import models
    from cis490.models.configs import SUMMARY_MODELS

    X_tr, y_tr, X_val, y_val, X_test, y_test, classes = data
    if model in SUMMARY_MODELS:
        def view(X):
            return X.reshape(len(X), -1)  # one row of channels x steps raw values
        m = models.create(model, n_classes=len(classes), classes=classes,
                          n_features=X_tr.shape[1] * X_tr.shape[2])
    else:
        def view(X):
            return X
        m = models.create(model, n_classes=len(classes), classes=classes,
                          n_channels=X_tr.shape[1], n_steps=X_tr.shape[2])
    t0, c0 = time.perf_counter(), time.process_time()
    report = m.fit(view(X_tr), y_tr, view(X_val), y_val, seed=seed)
    fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    acc = float((m.predict_proba(view(X_test)).argmax(axis=1) == y_test).mean())
    return {"model": model, "accuracy": acc, "fit_s": round(fit_s, 1), "fit_cpu_s": round(fit_cpu, 1),
            "best_val_macro_f1": report.best_val_macro_f1, "best_epoch": report.best_epoch,
            "epochs_run": report.epochs_run, "budget": report.budget}


def main() -> int:
    from cis490.models.configs import CONFIGS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--models", default=",".join(CONFIGS), help="default: every registered model")
    p.add_argument("--seed", type=int, default=0, help="validation carve and training seed")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the results as JSON")
    args = p.parse_args()
    names = [d for d in args.datasets.split(",") if d]
    model_names = [m for m in args.models.split(",") if m]
    unknown = [d for d in names if d not in LOADERS] + [m for m in model_names if m not in CONFIGS]
    if unknown:
        p.error(f"unknown: {', '.join(unknown)}")
    results: dict[str, dict] = {}
    t_all = time.perf_counter()
    for ds in names:
        data = load(ds, args.seed)
        shape = f"{data[0].shape[1]}x{data[0].shape[2]}"
        print(f"{ds}: {len(data[1])} train / {len(data[3])} val / {len(data[5])} test, "
              f"{len(data[6])} classes, {shape}", flush=True)
        results[ds] = {"shape": shape, "n_train": len(data[1]), "n_val": len(data[3]),
                       "n_test": len(data[5]), "models": {}}
        for model in model_names:
            r = run_one(model, data, args.seed)
            results[ds]["models"][model] = r
            b = r["budget"] or {}
            budget = (f"batch {b['batch_size']}, {b['total_steps']} steps, check every "
                      f"{b['check_every']} epochs" if b else "")
            print(f"  {model:<12} acc {r['accuracy']:.3f}  fit {r['fit_s']:6.1f} s  "
                  f"best epoch {r['best_epoch']}/{r['epochs_run']}  {budget}", flush=True)
    print(f"\nall fits: {time.perf_counter() - t_all:.0f} s wall\n")

    cols = model_names + ["FCN*", "ResNet*", "MiniRocket*"]
    print("| dataset | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for ds in names:
        ours = [f"{results[ds]['models'][m]['accuracy']:.3f}" for m in model_names]
        pub = [f"{PUBLISHED[ds][k][0]:.3f}" for k in ("FCN", "ResNet", "MiniRocket")]
        print(f"| {ds} | " + " | ".join(ours + pub) + " |")
    print("\n* published (see the module doc / docs/MODELS.md):")
    for ds in names:
        print(f"  {ds}: " + "; ".join(f"{k} {v[0]:.3f} ({v[2]})" for k, v in PUBLISHED[ds].items()))
    seq = [m for m in model_names if m in ("cnn", "gru", "lstm", "transformer")]
    for ds in names:
        fcn = PUBLISHED[ds]["FCN"][0]
        best = max(((results[ds]["models"][m]["accuracy"], m) for m in seq), default=None)
        cnn = results[ds]["models"].get("cnn")
        if best:
            print(f"  target {ds}: best sequence model {best[1]} {best[0]:.3f} "
                  f"({'met' if best[0] >= fcn - 0.02 else 'MISSED'}: >= FCN - 0.02 = {fcn - 0.02:.3f})"
                  + (f"; cnn {cnn['accuracy']:.3f} ({'met' if cnn['accuracy'] >= fcn - 0.03 else 'MISSED'}:"
                     f" >= FCN - 0.03 = {fcn - 0.03:.3f})" if cnn else ""))
    if args.json:
        Path(args.json).write_text(json.dumps({"seed": args.seed, "results": results,
                                               "published": PUBLISHED}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
