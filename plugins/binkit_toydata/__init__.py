"""Tiny synthetic datasets for tests and demos (no files, no network)."""
