"""The documentation holds together: every relative link in README.md and docs/ resolves (a file that
exists, a heading that exists), nothing links outside the repository, and every setting and every reason
code the code defines is documented."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "streamrisk"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SETTINGS_DOC = ROOT / "docs" / "operations.md"

# [label](target) and ![alt](target); the target ends at whitespace or the closing parenthesis.
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")


def _prose(text: str) -> list[str]:
    """The lines outside fenced code blocks (links and headings in code are not links or headings)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its label
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a link may name in `path`: its headings' slugs (repeats numbered, as GitHub does) and
    explicit `<a id=...>` anchors."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for line in _prose(path.read_text()):
        m = _HEADING.match(line)
        if m:
            slug = github_slug(m.group(2))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
        out.update(_HTML_ANCHOR.findall(line))
    return out


def links(path: Path) -> list[str]:
    return [m.group(1) for line in _prose(path.read_text()) for m in _LINK.finditer(line)]


def broken_links(path: Path) -> list[str]:
    """The relative links of one Markdown file that do not resolve, each with the reason."""
    problems = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if ROOT not in dest.parents and dest != ROOT:
            problems.append(f"{target}: outside the repository")
            continue
        if not dest.exists():
            problems.append(f"{target}: no such file")
            continue
        if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{target}: no heading with the anchor #{anchor} in {dest.relative_to(ROOT)}")
    return problems


def test_the_docs_exist_and_the_readme_is_a_front_door() -> None:
    names = {p.name for p in DOCS}
    assert {"README.md", "architecture.md", "contract.md", "operations.md"} <= names
    assert len((ROOT / "README.md").read_text().splitlines()) <= 320


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path) -> None:
    assert broken_links(path) == []


def test_every_doc_is_reachable_from_the_readme() -> None:
    readme_links = {t.partition("#")[0] for t in links(ROOT / "README.md")}
    for doc in DOCS[1:]:
        assert f"docs/{doc.name}" in readme_links, f"README.md does not link docs/{doc.name}"


def test_nothing_links_outside_the_repository() -> None:
    """`../shared` and the like exist on the development machine only: a clone would miss them."""
    for path in [*DOCS, *SRC.rglob("*.md")]:
        text = path.read_text()
        assert "../shared" not in text, f"{path.relative_to(ROOT)} refers to ../shared"
        for target in links(path):
            if "://" in target:
                continue
            dest = (path.parent / target.partition("#")[0]).resolve()
            assert dest == ROOT or ROOT in dest.parents, f"{path.relative_to(ROOT)} links {target}"


def test_a_broken_link_or_a_missing_anchor_is_found(tmp_path: Path) -> None:
    """The checker itself can fail: a missing file, a missing heading and a link out of the tree."""
    doc = ROOT / "docs" / "operations.md"
    fake = doc.parent / "_test_docs_probe.md"
    fake.write_text(
        "# Probe\n\n## A heading, with `code` and punctuation!\n\n"
        "[ok](#a-heading-with-code-and-punctuation) [ok](operations.md#settings)\n"
        "[gone](no-such-file.md) [anchor](operations.md#no-such-heading) [out](../../elsewhere.md)\n"
        "```\n[in code](not-checked.md)\n```\n"
    )
    try:
        problems = broken_links(fake)
    finally:
        fake.unlink()
    assert [p.split(":")[0] for p in problems] == [
        "no-such-file.md", "operations.md#no-such-heading", "../../elsewhere.md"
    ]


def test_github_slugs() -> None:
    assert github_slug("The worker's batch loop") == "the-workers-batch-loop"
    assert github_slug("Design note: exact windows") == "design-note-exact-windows"
    assert github_slug("Module map (`src/streamrisk/`)") == "module-map-srcstreamrisk"
    assert github_slug("HTTP API, metrics and dashboard") == "http-api-metrics-and-dashboard"


# -- settings


def settings_the_code_reads() -> set[str]:
    """Every `STREAMRISK_*` name in the code (Settings.from_env's and any other environment read) and the
    scripts, and every one the test suite reads from its environment."""
    names: set[str] = set()
    for path in [*SRC.rglob("*.py"), *(ROOT / "scripts").iterdir()]:
        if path.is_file() and path.suffix in ("", ".py", ".sh"):
            names.update(re.findall(r"\bSTREAMRISK_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    for path in (ROOT / "tests").rglob("*.py"):
        names.update(re.findall(r"(?:environ\.get\(|environ\[|getenv\()\s*\"(STREAMRISK_[A-Z0-9_]+)\"",
                                path.read_text()))
    return names


def documented_settings() -> set[str]:
    """The names in the first column of a table in the settings document."""
    return set(re.findall(r"^\|\s*`(STREAMRISK_[A-Z0-9_]+)`", SETTINGS_DOC.read_text(), re.MULTILINE))


def test_every_setting_the_code_reads_is_in_the_settings_tables() -> None:
    code = settings_the_code_reads()
    assert "STREAMRISK_BOOTSTRAP" in code and "STREAMRISK_KAFKA_JVM_OPTS" in code  # the scan finds them
    assert sorted(code - documented_settings()) == []


def test_every_setting_documented_is_one_the_code_reads() -> None:
    assert sorted(documented_settings() - settings_the_code_reads()) == []


# -- reason codes


def code_constants() -> set[str]:
    """Module-level constants that name themselves, `CODE = "CODE"` (or `CODE: Final = "CODE"`): the
    reason codes the processor, the rules and the credit policy define in Python."""
    codes: set[str] = set()
    for path in SRC.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                target, value = node.target, node.value
            else:
                continue
            if (isinstance(target, ast.Name) and isinstance(value, ast.Constant)
                    and value.value == target.id and re.fullmatch(r"[A-Z][A-Z0-9_]+", target.id)):
                codes.add(target.id)
    return codes


def rule_codes() -> set[str]:
    """The reason codes of the shipped ruleset."""
    (path,) = [p for p in SRC.rglob("default.yaml") if p.parent.name == "rules"]
    return {rule["reason"] for rule in yaml.safe_load(path.read_text())["rules"]}


def dead_letter_classes() -> set[str]:
    """The labels `reason_class` gives dead letters (metrics, /stats)."""
    (path,) = SRC.rglob("reason_class.py")
    tree = ast.parse(path.read_text())
    classes: set[str] = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                and any(isinstance(t, ast.Name) and t.id in ("RULESET", "BAD_VALUE") for t in node.targets)):
            classes.add(node.value.value)
        if isinstance(node, ast.Tuple) and len(node.elts) == 2 and isinstance(node.elts[1], ast.Tuple):
            first = node.elts[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                classes.add(first.value)
    return classes


def documented_codes() -> set[str]:
    """The codes in the first column of a table anywhere in the docs."""
    found: set[str] = set()
    for path in DOCS:
        found.update(re.findall(r"^\|\s*`([A-Za-z_][A-Za-z0-9_]*)`\s*\|", path.read_text(), re.MULTILINE))
    return found


def test_every_reason_code_is_documented() -> None:
    codes = code_constants() | rule_codes()
    # The scan finds what it should: processor, rules, credit (user and merchant).
    assert {"CHARGEBACK", "UNMATCHED_CHARGEBACK", "HIGH_SCORE", "VELOCITY_5M", "FREEZE_LIFTED",
            "MERCHANT_FRAUD_ALERT"} <= codes
    assert sorted(codes - documented_codes()) == []


def test_every_dead_letter_reason_class_is_documented() -> None:
    classes = dead_letter_classes()
    assert {"not_json", "processing_failed", "ruleset", "bad_value"} <= classes
    assert sorted(classes - documented_codes()) == []
