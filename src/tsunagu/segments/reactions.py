"""Segments' reaction to applied events."""
