"""Settings every test shares."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_trust_store(tmp_path_factory, monkeypatch):
    """Space files trusted during a test go to a file of the test session, not the user's."""
    store = tmp_path_factory.getbasetemp() / "trusted_spaces"
    monkeypatch.setenv("HYPERNAS_TRUSTED_SPACES", str(store))
