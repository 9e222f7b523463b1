"""``gbt``: gradient-boosted trees (XGBoost ``hist``) on the summary features.

Trees are invariant to monotone rescaling and XGBoost learns a default
direction for missing values, so ``gbt`` keeps NaN as NaN and records no
normalisation statistics (``"normalisation": null`` in its checkpoint).
The loop is :func:`cis490.models.boost.fit_xgb`; the sidecar is XGBoost's JSON
model (``<model>_<mode>.xgb.json``) of the booster cut to its best round.
"""

from __future__ import annotations

import numpy as np
import xgboost as xgb

from cis490.models import boost
from cis490.models._array import ArrayModel, chunks


class GBTModel(ArrayModel):
    name = "gbt"
    kind = "summary"
    sidecar_ext = ".xgb.json"
    libraries = ("numpy", "xgboost")
    resumable = True

    booster: xgb.Booster | None = None

    def _fit(self, X_train, y_train, X_val, y_val, seed, on_epoch, on_step=None):
        # a boosting round is gbt's epoch (on_epoch); there are no batches within it
        self.booster, report = boost.fit_xgb(
            X_train, y_train, X_val, y_val,  # streamed in batches (boost.RowBatches)
            cfg=self.config, class_weights=self.class_weights, n_classes=self.n_classes,
            seed=seed, on_epoch=on_epoch, scratch=self.scratch_dir, resume=self.resume,
        )
        return report

    def _predict(self, X) -> np.ndarray:
        out = np.empty((X.shape[0], self.n_classes), dtype=np.float32)
        for sl in chunks(X.shape[0], boost.ITER_ROWS):  # rows are independent: same values
            d = xgb.DMatrix(np.ascontiguousarray(X[sl], dtype=np.float32), nthread=self.config.threads)
            out[sl] = self.booster.predict(d).reshape(-1, self.n_classes)
        return out

    def _sidecar_bytes(self) -> bytes:
        return bytes(self.booster.save_raw(raw_format="json"))

    def _load_sidecar(self, data: bytes) -> None:
        self.booster = xgb.Booster(params={"nthread": self.config.threads})
        self.booster.load_model(bytearray(data))


MODEL_CLASS = GBTModel
