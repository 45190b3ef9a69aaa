"""The README's command blocks, for tests that run them as written in a fresh copy of the project.

The rule of the README's code fences (``tests/integration/test_readme_commands.py`` checks that every
fence is one of these and runs every ``sh`` block, in README order, in one fresh copy):

- ``sh``: commands that work as written on a fresh clone, on this machine alone (no cluster, Docker,
  S3, or endpoint or secret of your own), and finish within minutes. The README test runs them, but
  for one that comes after a ``console`` block of its own section: that block is a step the reader does
  by hand (e.g. bring their data), so the section's own test does that step, then runs the ``sh`` block
  (:func:`standalone` tells them apart).
- ``console``: commands for the reader that need what a fresh clone here lacks (a cluster, Docker,
  S3, your own endpoints or secrets), or that run until stopped (servers, UIs) or for long (the whole
  test suite, benchmarks, 10M rows). Nothing runs them.
- ``text``: output and layouts.

So whether a block runs is decided by its fence, next to the block, not by a list kept here.

API: :func:`blocks` (a section's blocks by heading), :func:`fenced` (every block with its heading),
:func:`standalone` (the ``sh`` blocks a fresh copy runs as they are),
:func:`fresh_copy` (the project's tracked files in a new folder, with a fresh ``.state``),
:func:`clean_env` and :func:`run_block`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RUN, SHOWN, OUTPUT = "sh", "console", "text"
FENCES = (RUN, SHOWN, OUTPUT)
# Variables that would point a command at another state than the fresh copy's (make env sets them anew).
STATE_VARIABLES = ("AIRFLOW", "MLPIPE_", "MLFLOW_", "AWS_", "VIRTUAL_ENV", "PYTHONPATH")

_HEADING = re.compile(r"#{1,6}\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"(\s*)```(\S*)\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced block of the README: the heading of its section, its fence's language and its text."""

    heading: str
    lang: str
    text: str


def _parse(readme: Path) -> tuple[list[str], list[Block]]:
    """The section headings of ``readme`` and its fenced blocks, both in order."""
    found_headings: list[str] = []
    found_blocks: list[Block] = []
    fence, indent, lines = None, "", []
    for line in readme.read_text().splitlines():
        if fence is not None:
            if line.strip() == "```":
                found_blocks.append(Block(found_headings[-1] if found_headings else "", fence,
                                          "\n".join(lines) + "\n"))
                fence = None
            else:
                lines.append(line.removeprefix(indent))
        elif match := _FENCE.fullmatch(line):
            indent, fence, lines = match.group(1), match.group(2), []
        elif match := _HEADING.fullmatch(line):
            found_headings.append(match.group(1))
    if fence is not None:
        raise ValueError(f"{readme.name}: a ```{fence} block is never closed")
    return found_headings, found_blocks


def fenced(readme: Path = README) -> list[Block]:
    """Every fenced block of ``readme``, in order, with the heading of the section it is in."""
    return _parse(readme)[1]


def standalone(readme: Path = README) -> list[Block]:
    """The ``sh`` blocks that need nothing but a fresh copy (and the ``sh`` blocks before them), in order:
    every one but those after a ``console`` block of their own section (a step the reader does by hand)."""
    found, by_hand = [], set()
    for block in fenced(readme):
        if block.lang == SHOWN:
            by_hand.add(block.heading)
        elif block.lang == RUN and block.heading not in by_hand:
            found.append(block)
    return found


def blocks(heading: str, lang: str = RUN, readme: Path = README) -> list[str]:
    """The ``lang`` blocks of the section titled ``heading`` (up to the next heading of any level), in order.

    Raises ``KeyError`` when there is no such heading, so a renamed section fails its test instead of
    leaving it nothing to run.
    """
    found_headings, found_blocks = _parse(readme)
    if heading not in found_headings:
        raise KeyError(f"{readme.name} has no section {heading!r}")
    return [block.text for block in found_blocks if block.heading == heading and block.lang == lang]


def fresh_copy(destination: Path) -> Path:
    """A fresh copy of the project in ``destination``: the files ``git ls-files`` lists (as they are in the
    working tree, times kept), with this checkout's ``.venv`` linked in and no ``.state``. Returns it."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source, target = ROOT / name, destination / name
        if not source.exists() and not source.is_symlink():  # deleted in the working tree
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)
    (destination / ".venv").symlink_to(ROOT / ".venv")
    return destination


def clean_env(project: Path) -> dict[str, str]:
    """The environment of a new shell in the fresh copy ``project``: this process's, without what points
    at another state (Airflow, MLflow, mlpipe, S3, a virtual environment); ``PYTHONPATH`` is the copy's
    ``plugins/``, where a clone's own ``.venv`` would find the package (the linked one points here)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(STATE_VARIABLES)}
    env["PATH"] = os.pathsep.join(entry for entry in env.get("PATH", "").split(os.pathsep)
                                  if not entry.rstrip("/").endswith("/.venv/bin"))
    env["PYTHONPATH"] = str(project / "plugins")
    return env


def run_block(block: str, cwd: Path, env: dict[str, str] | None = None,
              timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run a block as written in one ``bash`` (stopping at its first failing command) in the fresh copy
    ``cwd``, with ``env`` (default: :func:`clean_env` of ``cwd``). ``stdout`` holds its output and errors,
    interleaved."""
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block], cwd=cwd,
                          env=clean_env(cwd) if env is None else env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
