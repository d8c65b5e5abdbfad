"""The documentation is self-contained: no doc or docstring points outside the repository, and
every cited section of docs/methods.md exists."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = [REPO / "README.md", *(REPO / "docs").rglob("*.md"), *(REPO / "harness").rglob("*.py"),
           *(REPO / "plugins").rglob("*.py"), *(REPO / "plugins").rglob("*.md"), *(REPO / "plugins").rglob("*.json"),
           *(REPO / "docs" / "examples").rglob("*.py")]
OUTSIDE = re.compile(r"METHODS\.md|DATASETS\.md|DESIGN\.md|STYLE\.md|shared/")
CITATION = re.compile(r"docs/methods\.md`{0,2}'?s?,? (?:§|sections? )?(\d(?:\.\d)?)")


def test_no_reference_points_outside_the_repository():
    bad = [f"{p.relative_to(REPO)}:{i}: {line.strip()[:100]}" for p in SOURCES
           for i, line in enumerate(p.read_text().splitlines(), 1) if OUTSIDE.search(line)]
    assert not bad, "\n".join(bad)


def test_cited_sections_of_the_methods_page_exist():
    text = (REPO / "docs" / "methods.md").read_text()
    sections = set(re.findall(r"^#{2,3} (\d(?:\.\d)?)[. ]", text, flags=re.M))
    cited = {(m, p.relative_to(REPO)) for p in SOURCES for m in CITATION.findall(p.read_text())}
    missing = sorted(f"{p}: {m}" for m, p in cited if m not in sections)
    assert len(cited) > 40 and not missing, missing
