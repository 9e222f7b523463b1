"""Training: the driver a worker spawns, and what it needs around a model's ``fit``.

The rules and loops a model's ``fit`` runs live with the models
(``cis490.models.rules``: class weights, macro F1, budget, LR warmup + cosine,
early stopping; ``cis490.models.loop``: the torch loop of the nets;
``cis490.models.boost``: the XGBoost one).

- ``data``: train/val arrays from the data loaders (``cis490.data.load``) (test ids never passed);
- ``run``: ``python -m cis490.train.run`` (docs/CONTRACTS.md, docs/MODELS.md).

Importing this package imports nothing heavy.
"""
