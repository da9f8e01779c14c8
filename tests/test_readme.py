"""Every code block in README.md runs, in order, in one scratch folder.

Rules the README follows (checked here):

* every fenced block names its language: ``python`` and ``bash`` blocks are executed, ``text``
  blocks are sample output and are not;
* ``python`` blocks are self-contained (each runs in a fresh namespace);
* in ``bash`` blocks, ``pip install`` and ``pytest`` commands are not re-run (CI has just run
  them: that is ``.ci/run``) — they must be exactly the ones ``.ci/run`` uses or the README's
  set-up line; every other command runs with ``bash -euo pipefail``, ``tasder`` and ``python3``
  resolving to the interpreter running the tests.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```\s*$", re.S | re.M)
EXECUTED = {"python", "bash"}
ALLOWED = EXECUTED | {"text"}


def _blocks() -> list[tuple[int, str, str]]:
    text = README.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        out.append((line, m.group(1).strip(), m.group(2)))
    return out


BLOCKS = _blocks()


def test_every_block_names_an_allowed_language() -> None:
    assert BLOCKS, "README.md has no code blocks"
    bad = [(line, lang) for line, lang, _ in BLOCKS if lang not in ALLOWED]
    assert not bad, f"README blocks without python/bash/text language (line, info): {bad}"


def test_readme_uses_no_deprecated_name() -> None:
    deprecated = ("search", "search_network", "search_training")  # tasder.hw's former mapper names
    code = "\n".join(body for _, lang, body in BLOCKS if lang in EXECUTED)
    used = [f"hw.{old}" for old in deprecated if re.search(rf"\bhw\.{old}\b", code)]
    prose = README.read_text(encoding="utf-8")
    used += [f"tasder.hw.{old}" for old in deprecated if f"tasder.hw.{old}`" in prose]
    assert not used, f"README uses deprecated names: {used}"


def _ci_command() -> str:
    lines = [x for x in (ROOT / ".ci" / "run").read_text().splitlines() if x.startswith("python3 -m pip")]
    assert len(lines) == 1, ".ci/run must hold exactly one test command line"
    return lines[0].strip()


def test_readme_test_command_is_what_ci_runs() -> None:
    ci = _ci_command()
    commands = [c.strip() for _, lang, body in BLOCKS if lang == "bash" for c in body.splitlines()]
    assert ci in commands, f"the README's test command must be exactly .ci/run's: {ci}"
    assert any("python3 -m tasder demo" in c and "pip install" in c for c in commands), \
        "the README's main-job command (install + tasder demo) is missing"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The README's commands run where a clone's files are: examples/ is what its own-model
    # section points at (examples/my_model.py:make), so it is copied in.
    folder = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "examples", folder / "examples")
    return folder


def _env(scratch: Path) -> dict[str, str]:
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    shim = scratch / ".bin"
    shim.mkdir(exist_ok=True)
    for name, target in (("python3", f'exec {shlex.quote(sys.executable)} "$@"'),
                         ("tasder", f'exec {shlex.quote(sys.executable)} -m tasder "$@"')):
        p = shim / name
        p.write_text(f"#!/usr/bin/env bash\n{target}\n")
        p.chmod(0o755)
    env["PATH"] = f"{shim}{os.pathsep}{bindir}{os.pathsep}{env.get('PATH', '')}"
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env.pop("COLUMNS", None)
    return env


def _runnable(line: str) -> str:
    """The part of a bash line to run: install and test commands are checked, not re-run."""
    ci = _ci_command()
    parts = [p.strip() for p in line.split("&&")]
    keep = []
    for p in parts:
        if p.startswith("python3 -m pip install"):
            assert line.strip() == ci or "torch==2.13.0" in p, f"README install command drifted: {p}"
            continue
        if p.startswith("python3 -m pytest") or p.startswith("python3 -m ruff"):
            assert line.strip() == ci, f"README test command drifted: {line}"
            continue
        keep.append(p)
    return " && ".join(keep)


@pytest.mark.slow
@pytest.mark.parametrize(("line", "lang", "body"), [b for b in BLOCKS if b[1] in EXECUTED],
                         ids=[f"line{b[0]}-{b[1]}" for b in BLOCKS if b[1] in EXECUTED])
def test_readme_block_runs(line: int, lang: str, body: str, scratch: Path) -> None:
    env = _env(scratch)
    if lang == "python":
        script = scratch / f"block_{line}.py"
        script.write_text(body)
        # A deprecated tasder name in the README fails the block (the warning points at the script).
        proc = subprocess.run([sys.executable, "-W", "error::DeprecationWarning:__main__", str(script)], cwd=scratch,
                              env=env, capture_output=True, text=True, timeout=900)
    else:
        # Heredocs span lines: only rewrite single-line commands, pass the rest through untouched.
        lines, out, in_heredoc = body.splitlines(), [], None
        for raw in lines:
            if in_heredoc is not None:
                out.append(raw)
                if raw.strip() == in_heredoc:
                    in_heredoc = None
                continue
            heredoc = re.search(r"<<-?\s*'?(\w+)'?", raw)
            if heredoc:
                in_heredoc = heredoc.group(1)
                out.append(raw)
                continue
            out.append(raw if raw.lstrip().startswith("#") else _runnable(raw))
        script = scratch / f"block_{line}.sh"
        script.write_text("set -euo pipefail\n" + "\n".join(out) + "\n")
        proc = subprocess.run(["bash", str(script)], cwd=scratch, env=env, capture_output=True, text=True,
                              timeout=900)
    assert proc.returncode == 0, f"README block at line {line} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
