"""Vigil server."""
