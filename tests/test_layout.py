"""The shape of the ``harness`` package: few top-level modules, small files, no import cycle
(function-level imports included), no issue tags or patch fences in the code and docs."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "harness"
MAX_TOP_LEVEL_MODULES = 6
MAX_LINES = 600
#: the procedural renderer is one long, linear piece of scene code
LONG_FILES_ALLOWED = {"harness/data/synth.py"}
#: KNOWN EXCEPTIONS, owned by other work in progress: files over the limit today. Remove an entry
#: as soon as its file is split (the test fails when an entry is no longer needed).
LONG_FILES_PENDING: set[str] = set()


def _modules() -> dict[str, Path]:
    """``dotted.name -> path`` of every module of the harness package."""
    out = {}
    for path in sorted(HARNESS.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """harness modules imported anywhere in ``path`` (module level and inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import mod` imports the submodule; `from mod import name` the module
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target.startswith("harness") and target != name:
                found.add(target)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as a path a -> ... -> a), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_at_most_six_top_level_modules():
    top = sorted(p.name for p in HARNESS.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_no_file_over_600_lines():
    long = {str(p.relative_to(ROOT)): n for p in HARNESS.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    unexpected = {k: v for k, v in long.items() if k not in LONG_FILES_ALLOWED | LONG_FILES_PENDING}
    assert not unexpected, f"files over {MAX_LINES} lines: {unexpected}"
    fixed = LONG_FILES_PENDING - set(long)
    assert not fixed, f"no longer over the limit, drop the exception: {fixed}"


def test_no_import_cycle_among_harness_modules():
    modules = _modules()
    known = set(modules)
    graph = {name: _imports(name, path, known) for name, path in modules.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_detector_finds_a_function_level_cycle(tmp_path):
    a = tmp_path / "a.py"
    a.write_text("from harness.x import b\n")
    b = tmp_path / "b.py"
    b.write_text("def f():\n    from harness.x.a import g\n")
    known = {"harness.x", "harness.x.a", "harness.x.b"}
    graph = {"harness.x.a": _imports("harness.x.a", a, known), "harness.x.b": _imports("harness.x.b", b, known),
             "harness.x": set()}
    assert _cycle(graph) == ["harness.x.a", "harness.x.b", "harness.x.a"]


TAG = re.compile(r"\(issues? \d+[^)]*\)|\bissue \d+\b", re.IGNORECASE)
#: the closing marker of a fenced-in patch (``# --- end robustness ---``) or a merge conflict
FENCE = re.compile(r"^\s*# -{2,} *end\b.*-{2,}\s*$|^(<{7}|={7}|>{7})( |$)")


@pytest.mark.parametrize("folder", ["harness", "docs"])
def test_no_issue_tags_or_patch_fences(folder):
    hits = []
    for path in sorted((ROOT / folder).rglob("*")):
        if path.suffix not in (".py", ".md") or not path.is_file():
            continue
        for no, line in enumerate(path.read_text().splitlines(), 1):
            if TAG.search(line) or FENCE.match(line):
                hits.append(f"{path.relative_to(ROOT)}:{no}: {line.strip()}")
    assert not hits, "\n".join(hits)
