"""Fixtures of the model suite; the data helpers live in ``models_helpers``."""

from __future__ import annotations

import pytest
from tests.models.models_helpers import new_model, task_for


@pytest.fixture(scope="session")
def fitted():
    """One fitted model per name, shared by the read-only tests (fit once)."""
    cache: dict[str, tuple] = {}

    def get(name: str):
        if name not in cache:
            data = task_for(name)
            model = new_model(name)
            report = model.fit(*data, seed=0)
            cache[name] = (model, report, data)
        return cache[name]

    return get
