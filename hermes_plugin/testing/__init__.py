"""Test helpers: loopback servers and fake providers (also used by the pytest plugin and the demo)."""
