"""Vigil store."""
