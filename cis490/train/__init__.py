"""Training: the shared rules and loops, and the driver a worker spawns.

- ``rules``: class weights (train slice only), macro F1, LR warmup + cosine,
  early stopping - numpy only;
- ``loop``: the torch loop of the five nets; ``boost``: the XGBoost one;
- ``data``: train/val arrays from issue 3's loaders (test ids never passed);
- ``run``: ``python -m cis490.train.run`` (docs/CONTRACTS.md, docs/MODELS.md).

Importing this package imports nothing heavy.
"""
