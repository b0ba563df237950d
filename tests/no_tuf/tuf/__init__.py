"""Stands in for a machine without python-tuf (tests/test_updates_store.py puts this folder first
on PYTHONPATH): importing it fails as a missing package does."""

raise ImportError("No module named 'tuf' (hidden by tests/no_tuf)")
