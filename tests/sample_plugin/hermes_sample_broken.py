"""A plugin whose import fails: hermes-plugin must report it and keep loading the others."""

raise RuntimeError("sample plugin is broken on purpose")
