"""Vigil av."""
