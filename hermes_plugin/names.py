"""Names shared by several modules, spelled once."""

# The key of the guard's per-app state in ``app.extensions`` (a ``GuardState``).
EXTENSION = "hermes_plugin"
