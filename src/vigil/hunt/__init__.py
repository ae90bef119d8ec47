"""Vigil hunt."""
