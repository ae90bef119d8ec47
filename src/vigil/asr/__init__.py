"""Vigil asr."""
