"""Vigil air."""
