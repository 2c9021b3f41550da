"""Claim tests: see conftest.py."""
