"""Figures you can trace: every results file the READMEs quote has a benchmark that writes it, and
every committed result says on which machine and when it was measured."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", REPO / "bench" / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _named_results() -> dict[str, set[str]]:
    """results file stem → the docs that quote it (as `results/NAME.json`)."""
    named: dict[str, set[str]] = {}
    for doc in DOCS:
        for stem in re.findall(r"results/([\w-]+)\.json", doc.read_text()):
            named.setdefault(stem, set()).add(str(doc.relative_to(REPO)))
    return named


def _writers() -> dict[str, str]:
    """results file stem → the bench module that writes it (`save("NAME", …)`, its own path, or
    the name its docstring says; ``--save-as NAME`` benchmarks write the name they are given, or
    their default)."""
    writers = {}
    for module in sorted((REPO / "bench").glob("*.py")):
        text = module.read_text()
        stems = [
            *re.findall(r'save\("([\w-]+)"', text),
            *re.findall(r'"results" / "([\w-]+)\.json"', text),
            *re.findall(r"bench/results/([\w-]+)\.json", text),
        ]
        if "--save-as" in text:
            stems += re.findall(r'"--save-as",\s*default="([\w-]+)"', text)  # its default name
            stems += re.findall(rf"python -m bench\.{module.stem}[^`\n]*--save-as (\w+)", _docs())
        for stem in stems:
            writers[stem] = module.name
    return writers


def _docs() -> str:
    return "\n".join(doc.read_text() for doc in DOCS)


def test_every_quoted_results_file_has_a_benchmark_that_writes_it():
    named, writers = _named_results(), _writers()
    assert {"detect", "backends", "demo"} <= set(named), named  # the parser finds the quotes
    orphans = {stem: docs for stem, docs in named.items() if stem not in writers}
    assert not orphans, f"figures quoted from results files no benchmark writes: {orphans}"


def test_committed_results_carry_machine_and_date():
    for path in sorted((REPO / "bench" / "results").glob("*.json")):
        machine = json.loads(path.read_text()).get("machine", {})
        assert {"cpu", "cores", "date"} <= set(machine), f"{path.name}: machine {machine}"
