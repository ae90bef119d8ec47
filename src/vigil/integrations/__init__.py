"""Vigil integrations."""
