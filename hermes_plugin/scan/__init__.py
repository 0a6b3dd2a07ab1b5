"""The race scanner (``hermes-plugin scan``): finds writes a page makes on load that change a stored value.

It serves the app through a proxy of its own (no guard) that delays catalog answers, opens the page in
headless Chromium, and compares each write to what the page had read just before. Modules: ``shape``
(which JSON is a catalog), ``traffic`` (the delaying, recording proxy), ``writes`` (which writes changed
a value), ``runner`` (the trials and the report).
"""

from .runner import CannotScan, Finding, Options, Report, Run, scan
from .shape import catalog_ids, model_like

__all__ = ["CannotScan", "Finding", "Options", "Report", "Run", "catalog_ids", "model_like", "scan"]
