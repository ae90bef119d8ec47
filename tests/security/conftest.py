"""Fixtures the attack tests share with the end-to-end suite: a real enrolled agent."""

from tests.e2e.conftest import agent  # noqa: F401  (the fixture)
