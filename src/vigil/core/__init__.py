"""Vigil's domain core: pure values and rules, no I/O and no frameworks."""
