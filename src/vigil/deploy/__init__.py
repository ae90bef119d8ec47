"""Vigil deploy."""
