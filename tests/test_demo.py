"""What `make demo` prints last: where the docs are and how to connect a BI tool.

The lines must point at things that exist: the docs' index.html where dbt writes it, commands the
`studyin` CLI accepts, and a README section of that title.
"""

from __future__ import annotations

import re
import shlex

from python_jobs.cli import build_parser
from python_jobs.demo import BI_README_SECTION, where_next
from python_jobs.paths import PROJECT_ROOT


def _commands(lines: list[str]) -> list[list[str]]:
    """The `studyin` command lines named in the text, without the executable's path."""
    found = re.findall(r"\.venv/bin/studyin ([a-z][a-z -]*[A-Z]*)", "\n".join(lines))
    return [shlex.split(command) for command in found]


def test_demo_names_the_generated_docs_and_how_to_serve_them():
    lines = where_next("/tmp/plot.png")
    project = (PROJECT_ROOT / "dbt_project.yml").read_text()
    target = re.search(r'^target-path: "([^"]+)"', project, re.MULTILINE).group(1)
    assert f"{PROJECT_ROOT / target / 'index.html'}" in lines[0]
    assert ["dbt", "docs", "serve"] in _commands(lines)
    assert lines[-1].endswith("/tmp/plot.png")


def test_demo_says_how_to_connect_a_bi_tool_with_commands_that_exist():
    lines = where_next(None)
    commands = _commands(lines)
    assert ["bi-login", "NAME"] in commands
    parser = build_parser()
    for command in commands:
        parser.parse_args(command)  # exits (status 2) on a command the CLI does not know
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert f"'{BI_README_SECTION}'" in "\n".join(lines)
    assert re.search(rf"^#+ {re.escape(BI_README_SECTION)}$", readme, re.MULTILINE), (
        f"README.md has no section '{BI_README_SECTION}'"
    )
