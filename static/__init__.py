"""Browser assets (installed as hermes_plugin.static)."""
