"""``minirocket``: MiniRocket features (aeon) and a class-weighted ridge classifier.

Dempster, Schmidt & Webb (2021), "MiniRocket: A Very Fast (Almost)
Deterministic Transform for Time Series Classification" (KDD 2021,
arXiv:2012.08791). The transform is aeon's
``aeon.transformations.collection.convolution_based.MiniRocket`` (aeon >= 1.0
handles univariate and multivariate input in one class), not written here;
aeon is an optional extra (``pip install 'cis490[minirocket]'``), and this
module is imported only by ``cis490.models.create``/``load``.

Input (``(n, channels, steps)`` float32, NaN = missing, as for the nets):
per-channel standardisation from train, NaN -> 0, then the 0/1 mask of every
channel that has a missing value in the fit sample appended as an extra
channel (a mask that is constant there would give constant features).
MiniRocket's kernels need ``steps >= 9``.

Fit, with memory bounded by ``max_train_windows`` (docs/MODELS.md):

1. the transform's biases and the ridge are fitted on at most
   ``max_train_windows`` train windows, drawn without replacement from
   ``numpy.random.default_rng(seed)`` (all of them when there are fewer);
2. features (9 996 by default, float32) of that sample, standardised with
   its mean and standard deviation;
3. ridge regression on ``+1/-1`` one-vs-rest targets (sklearn's
   ``RidgeClassifier``, tested equal) with the train-slice class weights as
   sample weights and an unpenalised intercept, solved for every alpha of the
   grid from one Gram matrix (``n x n`` when the sample is smaller than the
   feature count, else ``p x p``) by Cholesky in place. The grid's alphas are
   per window: the solve uses ``n * alpha``, which is what the paper's
   ``RidgeClassifierCV(alphas=logspace(-3, 3, 10), normalize=True)`` did
   (unit-norm columns = standardised columns / sqrt(n));
4. one pass over val (in chunks) scores every alpha: val macro F1 (the
   repo's rule) picks the alpha, a tie the lower val log loss, then the
   larger alpha; each alpha is one ``EpochRecord``, largest first (``loss`` /
   ``val_loss`` = the class-weighted mean squared error of the ridge's
   decision values against the +1/-1 targets on its train windows / on val,
   per target; ``lr`` = the alpha);
5. ``predict_proba`` = ``softmax(decision / T)``, ``T`` the temperature that
   minimises that val log loss for the chosen alpha (on a fixed grid): ridge
   gives scores, the evaluation needs probabilities.

Sidecar ``<model>_<mode>.safetensors`` (``safetensors.numpy``, keys
sorted, no metadata): the transform's fitted ``parameters`` (``n_channels_per_
combination``, ``channel_indices``, ``dilations``, ``n_features_per_dilation``,
``biases``), the mask channels, the feature mean/scale and the ridge's
``coef``/``intercept``/``temperature``/``alpha``. Loading rebuilds a MiniRocket
whose ``parameters`` are these arrays, so it gives the same features.

Determinism: MiniRocket's fit draws from ``random_state`` (derived from the
seed; aeon seeds numpy's legacy global RNG and numba's, so the global numpy
state is saved and restored around it); its transform computes every window in
one numba thread (``prange`` over windows, no reduction across them), so its
bytes do not depend on ``threads`` (tested); BLAS, whose sums do depend on its
thread count, always runs on one thread (threadpoolctl), rows in fixed chunks.
The sidecar is the same for any ``threads`` (the JSON records the config).
"""

from __future__ import annotations

import contextlib
import math
import sys
import warnings

import numpy as np
from cis490.common import InputError



class _NoTorch:
    """A ``sys.meta_path`` finder that makes ``import torch`` fail (ModuleNotFoundError)."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (not loaded for minirocket)",
                                      name=name)
        return None


def _import_minirocket():
    """aeon's MiniRocket class, or one ImportError line naming the extra.

    ``aeon.transformations.collection.convolution_based`` also holds HydraTransformer,
    whose module imports torch whenever torch is installed (+180 MiB resident, a third of
    a minirocket job); MiniRocket needs none of it. Unless torch is already loaded, the
    import runs with a finder in front of ``sys.meta_path`` that refuses torch (aeon's
    soft-dependency check then answers "absent"), removed right after, so a later
    ``import torch`` in this process works as usual. The one cost: HydraTransformer, which
    cis490 does not use, lacks torch in such a process.
    """
    block = "torch" not in sys.modules
    if block:
        sys.meta_path.insert(0, _NoTorch)
    try:
        from aeon.transformations.collection.convolution_based import MiniRocket as cls
    except ImportError as exc:  # the optional extra is missing (or broken): one line says so
        raise ImportError(
            f"the minirocket model needs the optional library aeon, which cannot be imported "
            f"here ({exc}); install it with: pip install 'cis490[minirocket]'", name="aeon",
        ) from None
    finally:
        if block:
            sys.meta_path.remove(_NoTorch)
    return cls


MiniRocket = _import_minirocket()

import safetensors.numpy  # noqa: E402 - after the one-line refusal above
from scipy.linalg import blas, lapack  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from cis490.models import rules  # noqa: E402
from cis490.models._array import ArrayModel, chunks, fit_normalisation, standardise  # noqa: E402
from cis490.models.base import EpochRecord, FitReport  # noqa: E402

__all__ = ["CHUNK_ROWS", "MiniRocketModel", "MIN_STEPS", "ridge_alphas"]

CHUNK_ROWS = 512  # windows transformed at a time: 512 x 9 996 float32 = 20 MB of features
COL_BLOCK = 1024  # feature columns per float64 block of the Gram matrix
MIN_STEPS = 9  # MiniRocket's kernels have length 9
# the softmax temperature grid. Ridge scores live on the +1/-1 target scale, so a T under
# 0.01 only ever wins on a val set it separates; there it would round most probabilities
# to exactly 0 or 1 in float32 and tie the windows the evaluation ranks by P(clean)
TEMPERATURES = 10.0 ** np.linspace(-2.0, 2.0, 81)
PARAMETER_KEYS = ("n_channels_per_combination", "channel_indices", "dilations",
                  "n_features_per_dilation", "biases")  # MiniRocket.parameters, in order


def ridge_alphas(cfg) -> np.ndarray:
    """The alphas tried, largest first: ``epochs`` points log-spaced over the config's range
    (one point: the geometric middle)."""
    lo, hi = float(cfg.alpha_log10_min), float(cfg.alpha_log10_max)
    if cfg.epochs == 1:
        return np.array([10.0 ** ((lo + hi) / 2)])
    return 10.0 ** np.linspace(hi, lo, int(cfg.epochs))


@contextlib.contextmanager
def _quiet():
    """aeon warns on every window with a (near-)constant channel; a mask channel or a
    missing channel (0 after standardisation) is constant by design here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Data seen by instance of MiniRocket",
                                category=UserWarning)
        yield


@contextlib.contextmanager
def _global_numpy_rng_kept():
    """aeon's MiniRocket fit calls ``np.random.seed``: keep the caller's global state."""
    state = np.random.get_state()
    try:
        yield
    finally:
        np.random.set_state(state)


def _softmax(d: np.ndarray, temperature: float) -> np.ndarray:
    z = d / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _weighted_nll(d: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``sum_i w_i * -log softmax(d_i / T)[y_i]`` for every ``T`` of ``TEMPERATURES``."""
    z = d[None, :, :] / TEMPERATURES[:, None, None]  # (G, m, K)
    z = z - z.max(axis=2, keepdims=True)
    logp = z[:, np.arange(len(y)), y] - np.log(np.exp(z).sum(axis=2))
    return -(logp * w[None, :]).sum(axis=1)


class MiniRocketModel(ArrayModel):
    name = "minirocket"
    kind = "sequence"
    sidecar_ext = ".safetensors"
    libraries = ("numpy", "aeon", "numba", "scipy", "safetensors")

    transform: MiniRocket | None = None

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        if self.input_shape["n_steps"] < MIN_STEPS:
            raise InputError(f"minirocket needs n_steps >= {MIN_STEPS} (its kernels have length "
                             f"{MIN_STEPS}), got {self.input_shape['n_steps']}")
        self.mask_index = np.zeros(0, dtype=np.int32)  # channels whose mask is an input channel
        self.feature_mean: np.ndarray | None = None  # float32 (p,)
        self.feature_scale: np.ndarray | None = None  # float32 (p,)
        self.coef: np.ndarray | None = None  # float64 (p, K)
        self.intercept: np.ndarray | None = None  # float64 (K,)
        self.temperature = 1.0
        self.alpha = float("nan")

    # -- the pieces, shared by fit and predict (same arithmetic, same chunks) -----------

    def _inputs(self, X: np.ndarray) -> np.ndarray:
        """Raw rows -> MiniRocket's finite input: standardised values (NaN -> 0) + masks."""
        z, mask = standardise(X, self.norm_mean, self.norm_std)
        if self.mask_index.size:
            z = np.concatenate([z, mask[:, self.mask_index].astype(np.float32)], axis=1)
        return np.ascontiguousarray(z, dtype=np.float32)

    def _features(self, U: np.ndarray) -> np.ndarray:
        """Standardised MiniRocket features (float32) of prepared inputs."""
        with _quiet():
            F = np.asarray(self.transform.transform(U), dtype=np.float32)
        F -= self.feature_mean
        F /= self.feature_scale
        return F

    @staticmethod
    def _decision(F: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
        return F.astype(np.float64) @ coef + intercept

    @staticmethod
    def _limits():
        """One BLAS/OpenMP thread: OpenBLAS's sums depend on its thread count, and the ridge
        solve is bounded by the cap; ``threads`` goes to numba's transform only, whose bytes
        do not depend on it (a window is computed by one thread)."""
        return threadpool_limits(limits=1)

    # -- ArrayModel hooks --------------------------------------------------------------

    def _fit(self, X_train, y_train, X_val, y_val, seed, on_epoch, on_step=None):
        cfg = self.config
        self.norm_mean, self.norm_std = fit_normalisation(X_train)  # all of train, streamed
        n_train = X_train.shape[0]
        cap = int(cfg.max_train_windows)
        if n_train > cap:  # a seeded sample, read in row order
            idx = np.sort(np.random.default_rng(seed).choice(n_train, size=cap, replace=False))
        else:
            idx = np.arange(n_train)
        n = len(idx)
        raw = np.concatenate([np.asarray(X_train[idx[sl]], dtype=np.float32)
                              for sl in chunks(n)])
        ys = y_train[idx]
        self.mask_index = (np.flatnonzero(~np.isfinite(raw).all(axis=(0, 2))).astype(np.int32)
                           if cfg.mask_channels else np.zeros(0, dtype=np.int32))
        U = self._inputs(raw)
        del raw
        n_chunks = -(-n // CHUNK_ROWS)
        n_val_chunks = -(-X_val.shape[0] // CHUNK_ROWS)
        total = n_chunks + 1 + n_val_chunks
        done = 0

        def step() -> None:
            nonlocal done
            done += 1
            if on_step is not None:
                on_step(1, 1, done, total)

        with self._limits():
            self.transform = MiniRocket(
                n_kernels=int(cfg.n_kernels), max_dilations_per_kernel=int(cfg.max_dilations_per_kernel),
                n_jobs=int(cfg.threads), random_state=int(seed) % 2**32)
            with _global_numpy_rng_kept(), _quiet():
                self.transform.fit(U)
            p = len(self.transform.parameters[4])  # one bias per feature
            F = np.empty((n, p), dtype=np.float32)
            for sl in chunks(n, CHUNK_ROWS):
                with _quiet():
                    F[sl] = self.transform.transform(U[sl])
                step()
            del U
            # feature standardisation from the sample (sklearn's StandardScaler, as aeon's
            # MiniRocketClassifier); a constant feature keeps scale 1
            mean = np.zeros(p)
            sq = np.zeros(p)
            for blk in chunks(p, COL_BLOCK):
                B = F[:, blk].astype(np.float64)
                mean[blk] = B.mean(axis=0)
                sq[blk] = ((B - mean[blk]) ** 2).mean(axis=0)
            scale = np.sqrt(sq)
            self.feature_mean = mean.astype(np.float32)
            self.feature_scale = np.where(scale > 1e-6, scale, 1.0).astype(np.float32)
            for sl in chunks(n, CHUNK_ROWS):  # in place, as _features does it
                F[sl] -= self.feature_mean
                F[sl] /= self.feature_scale
            alphas = ridge_alphas(cfg)  # per window: the solve uses n * alpha (see the doc)
            coefs, intercepts, losses = _ridge_path(F, ys, self.class_weights[ys], self.n_classes,
                                                    n * alphas)
            del F
            step()
            return self._select(X_val, y_val, alphas, coefs, intercepts, losses, step, on_epoch)

    def _select(self, X_val, y_val, alphas, coefs, intercepts, losses, step,
                on_epoch) -> FitReport:
        """Score every alpha on val in one pass; keep the best (val macro F1, then val log loss)."""
        cfg = self.config
        n_val, A = X_val.shape[0], len(alphas)
        w_val = self.class_weights[y_val]
        pred = np.empty((A, n_val), dtype=np.int64)
        nll = np.zeros((A, len(TEMPERATURES)))
        sse = np.zeros(A)  # class-weighted squared error on val: the ridge's loss, as on train
        for sl in chunks(n_val, CHUNK_ROWS):
            F = self._features(self._inputs(np.asarray(X_val[sl], dtype=np.float32)))
            target = np.full((sl.stop - sl.start, self.n_classes), -1.0)
            target[np.arange(len(target)), y_val[sl]] = 1.0
            for a in range(A):
                d = self._decision(F, coefs[a], intercepts[a])
                pred[a, sl] = d.argmax(axis=1)
                nll[a] += _weighted_nll(d, y_val[sl], w_val[sl])
                sse[a] += float((w_val[sl, None] * (target - d) ** 2).sum())
            step()
        labels = rules.present_labels(y_val)  # the loops' (and the report's) label set
        history, best, best_key, since = [], 0, (-math.inf, -math.inf), 0
        for a in range(A):
            f1 = rules.macro_f1(y_val, pred[a], self.n_classes, labels=labels)
            log_loss = float(nll[a].min() / w_val.sum())  # at this alpha's best temperature
            rec = EpochRecord(epoch=a + 1, epochs=cfg.epochs, loss=float(losses[a]),
                              val_macro_f1=float(f1),
                              val_loss=float(sse[a] / (w_val.sum() * self.n_classes)),
                              lr=float(alphas[a]))
            history.append(rec)
            # strictly better val macro F1, or the same with a lower val log loss (a small val
            # set ties often); a full tie keeps the larger alpha, tried first
            if (f1, -log_loss) > best_key:
                best, best_key, since = a, (f1, -log_loss), 0
            else:
                since += 1
            if on_epoch is not None:
                on_epoch(rec)
            if since >= cfg.patience:
                break
        self.alpha = float(alphas[best])
        self.coef, self.intercept = coefs[best], intercepts[best]
        self.temperature = float(TEMPERATURES[int(np.argmin(nll[best]))])
        return FitReport(epochs_run=len(history), best_epoch=best + 1,
                         best_val_macro_f1=float(best_key[0]), history=tuple(history))

    def _predict(self, X) -> np.ndarray:
        out = np.empty((X.shape[0], self.n_classes), dtype=np.float32)
        with self._limits():
            for sl in chunks(X.shape[0], CHUNK_ROWS):  # rows are independent
                F = self._features(self._inputs(np.asarray(X[sl], dtype=np.float32)))
                out[sl] = _softmax(self._decision(F, self.coef, self.intercept), self.temperature)
        return out

    # -- the sidecar -----------------------------------------------------------------

    def _sidecar_bytes(self) -> bytes:
        params = dict(zip(PARAMETER_KEYS, self.transform.parameters))
        tensors = {
            **{f"minirocket.{k}": np.ascontiguousarray(v) for k, v in params.items()},
            "input.mask_channels": np.ascontiguousarray(self.mask_index, dtype=np.int32),
            "features.mean": self.feature_mean,
            "features.scale": self.feature_scale,
            "ridge.coef": np.ascontiguousarray(self.coef, dtype=np.float64),
            "ridge.intercept": np.ascontiguousarray(self.intercept, dtype=np.float64),
            "ridge.alpha": np.array([self.alpha], dtype=np.float64),
            "ridge.temperature": np.array([self.temperature], dtype=np.float64),
        }
        return safetensors.numpy.save({k: tensors[k] for k in sorted(tensors)})

    def _load_sidecar(self, data: bytes) -> None:
        t = safetensors.numpy.load(data)
        self.mask_index = t["input.mask_channels"].astype(np.int32)
        self.feature_mean, self.feature_scale = t["features.mean"], t["features.scale"]
        self.coef, self.intercept = t["ridge.coef"], t["ridge.intercept"]
        self.alpha = float(t["ridge.alpha"][0])
        self.temperature = float(t["ridge.temperature"][0])
        self.transform = rebuild_transform(
            self.config, self.input_shape["n_channels"] + len(self.mask_index),
            self.input_shape["n_steps"], tuple(t[f"minirocket.{k}"] for k in PARAMETER_KEYS))


def rebuild_transform(cfg, n_channels: int, n_steps: int, parameters: tuple) -> MiniRocket:
    """A fitted aeon MiniRocket whose ``parameters`` (its documented fitted attribute) are
    the given arrays: fitted on one all-zero window (aeon's own fit sets its input checks
    and internals), then the parameters replaced."""
    tr = MiniRocket(n_kernels=int(cfg.n_kernels),
                    max_dilations_per_kernel=int(cfg.max_dilations_per_kernel),
                    n_jobs=int(cfg.threads), random_state=0)
    with _global_numpy_rng_kept(), _quiet():
        tr.fit(np.zeros((1, n_channels, n_steps), dtype=np.float32))
    tr.parameters = tuple(np.ascontiguousarray(v) for v in parameters)
    return tr


def _ridge_path(F: np.ndarray, y: np.ndarray, sw: np.ndarray, n_classes: int,
                alphas: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray], list[float]]:
    """Weighted ridge on ``+1/-1`` one-vs-rest targets with an unpenalised intercept (sklearn's
    ``RidgeClassifier(alpha, solver="cholesky")`` with ``sample_weight=sw``), for every alpha.

    ``F`` (n, p) float32 is overwritten. Solved in the dual (``n x n`` Gram) when ``n <= p``,
    else in the primal (``p x p``); float64 throughout the solve. Returns per alpha the
    coefficients (p, K), the intercept (K,) and the class-weighted mean squared error of
    the fit (per target, over the fitted rows)."""
    n, p = F.shape
    Y = np.full((n, n_classes), -1.0)
    Y[np.arange(n), y] = 1.0
    sw = np.asarray(sw, dtype=np.float64)
    w_sum = sw.sum()
    y_mean = sw @ Y / w_sum
    x_mean = np.zeros(p)
    for blk in chunks(p, COL_BLOCK):
        x_mean[blk] = sw @ F[:, blk].astype(np.float64) / w_sum
    root = np.sqrt(sw)
    for blk in chunks(p, COL_BLOCK):  # F <- sqrt(w) * (F - x_mean): the weighted, centred design
        F[:, blk] = ((F[:, blk] - x_mean[blk]) * root[:, None]).astype(np.float32)
    Yc = (Y - y_mean) * root[:, None]
    dual = n <= p
    m = n if dual else p
    # the Gram matrix, accumulated in place by BLAS syrk into one triangle (its F-ordered
    # view's upper = its lower) from float64 blocks of the design, then mirrored: one m x m
    # matrix, no product temporaries
    gram = np.zeros((m, m))
    if dual:
        for blk in chunks(p, COL_BLOCK):
            B = F[:, blk].astype(np.float64)  # (n, b): B.T is F-ordered, trans=1 gives B B^T
            blas.dsyrk(1.0, B.T, beta=1.0, c=gram.T, trans=1, lower=0, overwrite_c=1)
        rhs = Yc
    else:
        rhs = np.zeros((p, n_classes))
        for sl in chunks(n, COL_BLOCK):
            B = F[sl].astype(np.float64)  # (r, p): B.T is F-ordered, trans=0 gives B^T B
            blas.dsyrk(1.0, B.T, beta=1.0, c=gram.T, trans=0, lower=0, overwrite_c=1)
            rhs += B.T @ Yc[sl]
    _mirror(gram, to_upper=True)
    sols, sses = [], []
    for alpha in alphas:
        sol = _solve_shifted(gram, float(alpha), rhs)
        sols.append(sol)
        if dual:  # the residual of the fit is alpha * c
            sses.append(float(alpha * alpha * (sol * sol).sum()))
    del gram
    if dual:  # coef = Xc^T c, for every alpha in one pass over the columns
        stacked = np.concatenate(sols, axis=1)
        coef_all = np.zeros((p, stacked.shape[1]))
        for blk in chunks(p, COL_BLOCK):
            coef_all[blk] = F[:, blk].astype(np.float64).T @ stacked
        coefs = [np.ascontiguousarray(coef_all[:, a * n_classes:(a + 1) * n_classes])
                 for a in range(len(alphas))]
    else:
        coefs = sols
        sses = [0.0] * len(alphas)
        for sl in chunks(n, COL_BLOCK):
            B = F[sl].astype(np.float64)
            for a, coef in enumerate(coefs):
                r = Yc[sl] - B @ coef
                sses[a] += float((r * r).sum())
    intercepts = [y_mean - x_mean @ coef for coef in coefs]
    losses = [sse / (w_sum * n_classes) for sse in sses]
    return coefs, intercepts, losses


def _solve_shifted(gram: np.ndarray, alpha: float, rhs: np.ndarray) -> np.ndarray:
    """``(gram + alpha I)^-1 rhs`` by Cholesky in ``gram``'s own memory (no second m x m
    matrix): LAPACK factors one triangle of the Fortran-ordered view and, with ``clean=0``,
    leaves the other alone; that triangle (``gram`` is exactly symmetric) and the saved
    diagonal then put ``gram`` back bit for bit."""
    m = gram.shape[0]
    diag = gram.diagonal().copy()
    gram.flat[:: m + 1] += alpha
    view = gram.T  # F-contiguous, the same memory; its upper triangle = gram's lower one
    factor, info = lapack.dpotrf(view, lower=0, clean=0, overwrite_a=1)
    if info != 0 or not np.shares_memory(factor, gram):  # pragma: no cover - alpha > 0: SPD
        raise np.linalg.LinAlgError(f"ridge Cholesky failed (info {info}, alpha {alpha:g})")
    sol, info = lapack.dpotrs(factor, rhs, lower=0)
    if info != 0:  # pragma: no cover
        raise np.linalg.LinAlgError(f"ridge solve failed (info {info})")
    _mirror(gram, to_upper=False)  # gram's lower triangle from its untouched upper one
    gram.flat[:: m + 1] = diag
    return sol


def _mirror(gram: np.ndarray, *, to_upper: bool) -> None:
    """Copy ``gram``'s lower triangle onto its upper one (or back), a block at a time."""
    for blk in chunks(gram.shape[0], COL_BLOCK):
        if to_upper:
            gram[: blk.start, blk] = gram[blk, : blk.start].T
        else:
            gram[blk, : blk.start] = gram[: blk.start, blk].T
        sub = gram[blk, blk]
        k = sub.shape[0]
        part = np.triu_indices(k, 1) if to_upper else np.tril_indices(k, -1)
        sub[part] = sub.T[part]


MODEL_CLASS = MiniRocketModel
