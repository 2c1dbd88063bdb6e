"""The project documents itself: the API page follows the OpenAPI document, metrics are listed,
nothing points outside the project."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from hostd.api.apidoc import render_markdown
from hostd.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
OUTSIDE = re.compile(r"\.\./shared|/work/share[d]")


def test_http_api_page_is_the_rendered_openapi_document() -> None:
    assert (DOCS / "http-api.md").read_text() == render_markdown(), (
        "run: python -m hostd.api.apidoc > docs/http-api.md"
    )


def test_every_metric_is_documented() -> None:
    text = (DOCS / "operations.md").read_text()
    for family in Metrics().registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        assert f"`{name}`" in text, name


def test_every_route_is_on_the_api_page() -> None:
    from hostd.api.handlers import ROUTES

    text = (DOCS / "http-api.md").read_text()
    for path, _ in ROUTES:
        assert f"## `GET {path}`" in text


def test_commands_page_has_a_section_per_command() -> None:
    text = (DOCS / "commands.md").read_text()
    for command in ("workspace.merge", "workspace.cleanup", "workspace.reconcile"):
        assert f"## {command}\n" in text
    assert "## orchestrator.upgrade\n" in text


def test_nothing_points_outside_the_project() -> None:
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    offenders = []
    for name in sorted(files):
        path = ROOT / name
        if path.is_file() and OUTSIDE.search(path.read_text(errors="replace")):
            offenders.append(name)
    assert offenders == []


def test_relative_links_in_the_docs_resolve() -> None:
    for page in [*DOCS.glob("*.md"), ROOT / "README.md"]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), (page.name, target)
