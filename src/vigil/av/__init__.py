"""Vigil's antivirus (next-generation protection): hash, YARA-X and heuristic signatures, archives, quarantine.

The engine (`engine.Engine`) is built from `definitions.Definitions` (the built-in ones, or a signed bundle
read by `bundle.read_bundle`); `scan.Scan` walks paths with it; `quarantine.QuarantineStore` keeps what it finds.
"""
