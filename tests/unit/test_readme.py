"""The README's command reference and settings table say what ``--help`` says: no option missing,
none that does not exist."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from lakebench.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
COMMON = {"--lake", "--catalog", "--json"}  # the section's prose says every lake command takes them


def commands(command: Any = None, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    command = command or typer.main.get_command(app)
    if path and any(p.param_type_name == "option" for p in command.params):
        yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from commands(sub, (*path, name))


def options(command: Any) -> set[str]:
    found = set()
    for param in command.params:
        if param.param_type_name == "option":
            found |= {o for o in (*param.opts, *param.secondary_opts) if o.startswith("--")}
    return found - {"--help"}


def section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def synopses() -> dict[tuple[str, ...], set[str]]:
    """The Commands section's code block: ``lakebench <command> …`` lines (with ``\\`` continuations)."""
    block = section("Commands").split("```")[1]
    joined = re.sub(r"\\\n\s*", " ", block)
    known = sorted((path for path, _ in commands()), key=len, reverse=True)
    found: dict[tuple[str, ...], set[str]] = {}
    for line in joined.splitlines():
        words = line.split()
        if not words or words[0] != "lakebench":
            continue
        path = next(p for p in known if tuple(words[1 : 1 + len(p)]) == p)
        found[path] = set(OPTION.findall(line))
    return found


CLI = dict(commands())


@pytest.mark.parametrize("path", sorted(CLI), ids=" ".join)
def test_the_command_reference_lists_every_option_and_no_other(path: tuple[str, ...]) -> None:
    documented = synopses()
    assert path in documented, f"README's Commands section has no line for lakebench {' '.join(path)}"
    assert documented[path] == options(CLI[path]), " ".join(path)


def test_the_reference_names_no_command_that_does_not_exist() -> None:
    assert set(synopses()) <= set(CLI)


def test_the_settings_table_matches_the_options_and_their_environment_variables() -> None:
    table = [line for line in section("Settings").splitlines() if line.startswith("| ") and "---" not in line]
    documented_options = {o for line in table for o in OPTION.findall(line.split("|")[2])}
    documented_env = {e for line in table for e in re.findall(r"LAKEBENCH_[A-Z0-9_]+", line.split("|")[3])}
    every_option = set().union(*(options(c) for c in CLI.values()))
    assert documented_options <= every_option, documented_options - every_option
    cli_env = {str(p.envvar) for c in CLI.values() for p in c.params if getattr(p, "envvar", None)}
    assert cli_env <= documented_env, cli_env - documented_env
    for line in table:  # an option and the variable in one row are the same setting
        cells = line.split("|")
        for option in OPTION.findall(cells[2]):
            owners = [p for c in CLI.values() for p in c.params if option in getattr(p, "opts", ())]
            envs = {str(p.envvar) for p in owners if p.envvar}
            assert envs <= set(re.findall(r"LAKEBENCH_[A-Z0-9_]+", cells[3])), (option, envs)


def test_common_options_are_declared_in_the_prose() -> None:
    prose = section("Commands").split("```")[0]
    assert all(f"`{option}`" in prose for option in COMMON)
