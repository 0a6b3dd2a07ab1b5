"""Bundled provider plugins (installed as hermes_plugin.hooks)."""
