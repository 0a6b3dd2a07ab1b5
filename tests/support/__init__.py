"""Helpers shared by the test modules (what host teams need lives in the pytest plugin instead)."""
