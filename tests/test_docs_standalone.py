"""The docs stand alone: links resolve inside the repository, config references match the code both ways,
and nothing points at material a user does not have (design notes, section or issue numbers, files
outside the checkout).

Every failure names the file and line (or the key and where it is missing), so whoever merges parallel
work can fix it without re-reading the test.
"""

from __future__ import annotations

import ast
import re
import subprocess
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIGURATION_MD = ROOT / "docs" / "configuration.md"
PROXY_MD = ROOT / "docs" / "proxy.md"
KEY = re.compile(r"\bHERMES_PLUGIN_[A-Z][A-Z0-9_]*[A-Z0-9]\b")
SKIPPED_DIRS = {
    ".git",
    ".tox",
    ".venv",
    "venv",
    "node_modules",
    "build",
    "dist",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "__pycache__",
}


def _tracked(*patterns: str) -> list[Path]:
    """Files of the checkout matching ``patterns`` (git's list when there is one, else a walk)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "--", *patterns],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        return sorted(ROOT / line for line in out.splitlines() if (ROOT / line).is_file())
    except (OSError, subprocess.SubprocessError):
        found: set[Path] = set()
        for pattern in patterns:  # "dir/*.py" is every .py below dir, as in git's pathspecs
            folder, _, name = pattern.rpartition("/")
            found.update(
                path
                for path in (ROOT / folder).rglob(name)
                if not SKIPPED_DIRS & set(path.relative_to(ROOT).parts) and path.is_file()
            )
        return sorted(found)


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# -- relative links -------------------------------------------------------------------------------------

FENCE = re.compile(r"^(```|~~~).*?^\1", flags=re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", flags=re.M)
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


def _blank(match: re.Match[str]) -> str:
    """Blank out a code span or block but keep its newlines, so line numbers still point at the source."""
    return re.sub(r"[^\n]", " ", match.group(0))


def _prose(text: str) -> str:
    return INLINE_CODE.sub(_blank, FENCE.sub(_blank, text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces become hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    anchors: set[str] = set(HTML_ANCHOR.findall(text))
    seen: dict[str, int] = {}
    for heading in HEADING.findall(FENCE.sub(_blank, text)):
        slug = _slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _links(path: Path) -> Iterator[tuple[int, str]]:
    prose = _prose(path.read_text(encoding="utf-8"))
    for match in LINK.finditer(prose):
        yield prose.count("\n", 0, match.start()) + 1, match.group(1)


MARKDOWN = [path for path in _tracked("*.md") if "data" not in path.relative_to(ROOT).parts]


def test_there_are_docs_to_check() -> None:
    names = {_rel(path) for path in MARKDOWN}
    assert {"README.md", "docs/configuration.md", "CONTRIBUTING.md"} <= names


@pytest.mark.parametrize("doc", MARKDOWN, ids=_rel)
def test_every_relative_link_resolves(doc: Path) -> None:
    broken: list[str] = []
    for line, target in _links(doc):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.I):  # http:, https:, mailto: ... not ours to check
            continue
        file_part, _, anchor = target.partition("#")
        linked = (doc.parent / file_part).resolve() if file_part else doc
        where = f"{_rel(doc)}:{line}: link {target!r}"
        if not linked.is_relative_to(ROOT):
            broken.append(f"{where} leaves the repository")
        elif not linked.exists():
            broken.append(f"{where}: {file_part} does not exist")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{where}: no heading in {_rel(linked)} has the anchor #{anchor}")
    assert not broken, "\n".join(broken)


# -- code the docs name ----------------------------------------------------------------------------------

CODE_REFERENCE = re.compile(
    r"`((?:tests|hermes_plugin|bench|hooks|static|proxy|state)/[\w/.-]+\.(?:py|js|sh|toml))"
    r"(?:::(\w+))?"
)


def test_files_and_functions_the_docs_name_exist() -> None:
    """`tests/test_x.py::test_name`, `proxy/app.py::read_bounded_body`: the file exists and defines the name."""
    stale: list[str] = []
    for doc in MARKDOWN:
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            for match in CODE_REFERENCE.finditer(line):
                path, name = match.groups()
                candidates = [ROOT / path, ROOT / "hermes_plugin" / path]  # `proxy/app.py` is short for the package's
                found = next((c for c in candidates if c.is_file()), None)
                if found is None:
                    stale.append(f"{_rel(doc)}:{number}: {path} does not exist")
                elif name and not re.search(
                    rf"^\s*(async\s+)?(def|class)\s+{name}\b|^{name}\s*=", found.read_text(encoding="utf-8"), flags=re.M
                ):
                    stale.append(f"{_rel(doc)}:{number}: {_rel(found)} defines no {name}")
    assert not stale, "\n".join(stale)


# -- no references a user cannot follow ------------------------------------------------------------------

FORBIDDEN = {
    "the design notes (DESIGN.md)": re.compile(r"\bDESIGN(\.md| section)\b", flags=re.I),
    "a section sign (name the behaviour instead; RFCs excepted)": re.compile(r"(?<!RFC \d{4} )§"),
    "a path outside the checkout (../shared)": re.compile(r"\.\./shared\b|\bshared/seed\b"),
    "an issue or PR number": re.compile(r"\b(issue|PR|pull request)s? #\d+|\(#\d+\)", flags=re.I),
    "the bug background notes ('the seed')": re.compile(
        r"\bseed (app|bug|issue)\b|\bseed's\b|\bthe seed\b", flags=re.I
    ),
}
SCANNED = ("*.md", "*.py", "*.js", "*.html", "*.cfg", "*.toml", "*.ini", "*.txt")


def test_no_references_to_material_outside_the_repository() -> None:
    found: list[str] = []
    for path in _tracked(*SCANNED):
        if path == Path(__file__).resolve() or "data" in path.relative_to(ROOT).parts:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for what, pattern in FORBIDDEN.items():
                if pattern.search(line):
                    found.append(f"{_rel(path)}:{number}: {what}: {line.strip()[:120]}")
    assert not found, "describe the behaviour itself instead of pointing at:\n" + "\n".join(found)


# -- configuration reference <-> code -----------------------------------------------------------------


def _keys_in_code() -> dict[str, str]:
    """Every ``HERMES_PLUGIN_*`` name the package reads -> the first file:line that names it."""
    where: dict[str, str] = {}
    for path in _tracked("hermes_plugin/*.py", "hooks/*.py"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for key in KEY.findall(line):
                where.setdefault(key, f"{_rel(path)}:{number}")
    return where


def _keys_in(doc: Path) -> dict[str, int]:
    where: dict[str, int] = {}
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        for key in KEY.findall(line):
            where.setdefault(key, number)
    return where


def test_every_config_key_the_code_reads_is_in_the_reference() -> None:
    documented = _keys_in(CONFIGURATION_MD)
    missing = {key: place for key, place in _keys_in_code().items() if key not in documented}
    assert not missing, "\n".join(
        f"{key} (read at {place}) is missing from docs/configuration.md: add a row"
        for key, place in sorted(missing.items())
    )


def test_every_config_key_in_the_reference_exists_in_the_code() -> None:
    code = _keys_in_code()
    assert {"HERMES_PLUGIN_CONFIG", "HERMES_PLUGIN_LOAD", "HERMES_PLUGIN_PROVIDERS"} <= set(code)
    stale = {key: line for key, line in _keys_in(CONFIGURATION_MD).items() if key not in code}
    assert not stale, "\n".join(
        f"docs/configuration.md:{line}: {key} is documented but no module under hermes_plugin/ or hooks/ reads it"
        for key, line in sorted(stale.items())
    )


def _table_column(doc: Path, header: str, column: int = 1) -> dict[str, int]:
    """Backticked lower-case names in one column of the table whose header row starts with ``header``."""
    names: dict[str, int] = {}
    inside = False
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith(header):
            inside = True
        elif inside and not line.startswith("|"):
            break
        elif inside and not line.startswith("| ---"):
            for name in re.findall(r"`([a-z_]+)`", line.split("|")[column]):
                names.setdefault(name, number)
    return names


def _proxy_keys_in_code() -> set[str]:
    tree = ast.parse((ROOT / "hermes_plugin" / "proxy" / "config.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "PROXY_KEYS" for t in node.targets):
            return set(ast.literal_eval(node.value))
    raise AssertionError("hermes_plugin/proxy/config.py no longer defines PROXY_KEYS: update this test")


def test_proxy_table_keys_match_the_code_both_ways() -> None:
    documented = _table_column(PROXY_MD, "| key | what |")
    code = _proxy_keys_in_code()
    problems = [
        f"[proxy] key {key!r} (hermes_plugin/proxy/config.py PROXY_KEYS) is missing from the key table of docs/proxy.md"
        for key in sorted(code - set(documented))
    ]
    problems += [
        f"docs/proxy.md:{documented[key]}: [proxy] key {key!r} is documented but not in PROXY_KEYS"
        for key in sorted(set(documented) - code)
    ]
    assert not problems, "\n".join(problems)


def _provider_keys_in_code() -> set[str]:
    """Keys a provider table may have: the common ones plus every kind's ``check_keys(table, {...})`` set."""
    keys: set[str] = set()
    for path in _tracked("hooks/*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "COMMON_KEYS" for t in node.targets
            ):
                keys |= set(ast.literal_eval(node.value.args[0]))  # type: ignore[attr-defined]
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "check_keys"
                and len(node.args) == 2
                and isinstance(node.args[1], ast.Set)
            ):
                keys |= set(ast.literal_eval(node.args[1]))
    return keys


def test_provider_table_keys_match_the_code_both_ways() -> None:
    documented = _table_column(CONFIGURATION_MD, "| key | type | meaning |")  # keys of every table
    for name, line in _table_column(CONFIGURATION_MD, "| kind | keys |", column=2).items():  # keys per kind
        documented.setdefault(name, line)
    code = _provider_keys_in_code()
    assert {"kind", "static", "base_url", "api_key_env"} <= code
    problems = [
        f"provider table key {key!r} (hooks/) is missing from docs/configuration.md's provider tables"
        for key in sorted(code - set(documented))
    ]
    problems += [
        f"docs/configuration.md:{documented[key]}: provider table key {key!r} is documented but no "
        f"kind in hooks/ accepts it"
        for key in sorted(set(documented) - code)
    ]
    assert not problems, "\n".join(problems)
