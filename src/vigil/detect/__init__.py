"""Vigil detect."""
