"""Let code run from a source checkout import ``hooks/`` and ``static/`` as ``hermes_plugin.hooks`` / ``.static``.

In the repository the bundled provider kinds and browser assets sit beside the package folder; the build
maps them into the package (``package_dir`` in setup.cfg), and an editable install's finder does the same.
Code run from the checkout after a non-editable install (``pip install .``, then ``python -c ...`` in the
repository) imports this folder instead of the installed copy and has no such mapping: so the two folders
are imported from the checkout's top folder under their package names. An installed package has ``hooks/``
inside and is left as it is.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
TOP = PACKAGE.parent
MAPPED = ("hooks", "static")  # the top-level folders setup.cfg's package_dir maps into the package


def _import_beside(name: str) -> None:
    """Import ``TOP/name`` as ``hermes_plugin.<name>`` (its modules then resolve from that folder)."""
    folder = TOP / name
    spec = importlib.util.spec_from_file_location(
        f"{__package__}.{name}", folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    setattr(sys.modules[__package__], name, module)


if not (PACKAGE / "hooks").is_dir() and all((TOP / name / "__init__.py").is_file() for name in MAPPED):
    for _name in MAPPED:
        if f"{__package__}.{_name}" not in sys.modules:
            _import_beside(_name)
