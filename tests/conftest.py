"""Suite-wide setup: the model job kinds are registered, as every entry point does.

``cis490.fleet`` knows only its own ``smoke`` kind; ``bin/cis490-spool``, the console
script and the demo import ``cis490.kinds``, which registers one kind per model. Tests
that build spools, manifests and workers in-process need the same registry.
``tests/fleet/test_kinds.py`` checks, in fresh interpreters, what the coordinator knows
without it.
"""

import cis490.kinds  # noqa: F401 - registers the model job kinds
