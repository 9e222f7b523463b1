"""Episode data: store format, decoder, synthetic generator, validator, windows,
summary features, tensor shards, splits and loaders (docs/DATA_PIPELINE.md).

Modules (one concept each; see docs/DATA_PIPELINE.md):

- ``channels``  channel registry, modes, ``PHASES``, window spec (stdlib only)
- ``episode``   bounded streaming ``.tar.zst`` decoder
- ``world`` / ``synth``  the synthetic world and store writer
- ``validate``  full sweep -> ``validation_v1.parquet``
- ``windows``   wall-clock grid, reset-safe rates, windows, summary stats
- ``schema``    ``feature_schema_v1.json`` and its hash
- ``features`` / ``tensors``  the builders
- ``splits`` / ``load``  what ``cis490.train`` and ``cis490.evaluate`` use
- ``cli``       the ``cis490`` verbs synth, validate, features, tensors

Nothing heavy is imported here: the coordinator may import
``cis490.data.channels`` without numpy or pandas installed.
"""
