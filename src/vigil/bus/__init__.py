"""Vigil bus."""
