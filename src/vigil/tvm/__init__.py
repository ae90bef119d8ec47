"""Vigil tvm."""
