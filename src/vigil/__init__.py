"""Vigil: open-source, self-hosted endpoint detection and response."""

__version__ = "0.1.0"
