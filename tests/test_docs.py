"""Meta-tests: every hook is documented with its exact signature and has a test; config keys are documented."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hermes_plugin import hookspecs

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
HOOKS_MD = DOCS / "hooks.md"
TESTS = Path(__file__).resolve().parent
SPEC_ATTR = "hermes_plugin_spec"  # pluggy marks hookspecs with <project name>_spec


def _hookspecs() -> dict[str, Callable[..., Any]]:
    return {name: fn for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, SPEC_ATTR)}


HOOKS = _hookspecs()


def _annotation(value: Any) -> str:
    # hookspecs.py uses `from __future__ import annotations`, so annotations are already source text.
    return value if isinstance(value, str) else inspect.formatannotation(value)


def _signature(fn: Callable[..., Any]) -> str:
    sig = inspect.signature(fn)
    params = ", ".join(f"{p.name}: {_annotation(p.annotation)}" for p in sig.parameters.values())
    return f"def {fn.__name__}({params}) -> {_annotation(sig.return_annotation)}"


def _sections() -> dict[str, str]:
    """docs/hooks.md split at its ``## `` headings: heading text -> section body."""
    parts = re.split(r"^## (.+)$", HOOKS_MD.read_text(encoding="utf-8"), flags=re.M)
    return {heading.strip(): body for heading, body in zip(parts[1::2], parts[2::2], strict=True)}


def test_there_are_hooks_to_check() -> None:
    assert {"register_catalogs", "register_provider_kinds"} <= set(HOOKS)


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_is_documented_with_its_signature(name: str) -> None:
    fn = HOOKS[name]
    heading = f"{name}({', '.join(inspect.signature(fn).parameters)})"
    sections = _sections()
    assert heading in sections, f"docs/hooks.md needs a section '## {heading}'"
    body = sections[heading]
    assert _signature(fn) in body, f"docs/hooks.md section {heading} must show `{_signature(fn)}`"
    assert "@hookimpl" in body, f"docs/hooks.md section {heading} needs an example implementation"
    assert "**Return value:**" in body, f"docs/hooks.md section {heading} must say what the return value means"
    firstresult = getattr(fn, SPEC_ATTR).get("firstresult", False)
    assert ("*firstresult.*" in body) == firstresult, f"{heading}: firstresult is {firstresult} in hookspecs.py"


def test_hooks_md_documents_no_unknown_hooks() -> None:
    documented = {heading.split("(", 1)[0] for heading in _sections() if "(" in heading}
    assert documented == set(HOOKS)


def test_hooks_md_examples_are_valid_python() -> None:
    blocks = re.findall(r"```python\n(.*?)```", HOOKS_MD.read_text(encoding="utf-8"), flags=re.S)
    examples = [block for block in blocks if "@hookimpl" in block]
    assert len(examples) >= len(HOOKS)
    for block in examples:
        compile(block, str(HOOKS_MD), "exec")


def _test_sources() -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in sorted(TESTS.rglob("*.py")))


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_has_a_test(name: str) -> None:
    assert re.search(rf"^\s*(async\s+)?def test_hook_{name}\b", _test_sources(), flags=re.M), (
        f"add a test named test_hook_{name} under tests/"
    )


# Config keys in docs/configuration.md against the code, both ways: tests/test_docs_standalone.py.
