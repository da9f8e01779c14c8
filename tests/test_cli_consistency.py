"""The conventions every ``tasder`` command follows (see the docstring of tasder.cli.common).

* ``--help`` ends with an ``Examples:`` block;
* every command that prints a table has ``--json`` (valid JSON on stdout) and ``--output/-o``;
* exit codes: 0 ok, 2 bad usage or input (one ``error:`` line, nothing on stdout), 1 any other
  failure (one ``error:`` line, the traceback only with TASDER_DEBUG=1), 130 interrupted;
* progress bars and status lines only on a terminal; no ANSI codes when not a terminal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import typer
from torch import nn

import tasder.cli.app as cli
import tasder.zoo
from tasder.cli import common
from tasder.cli.app import run
from tasder.cli.common import progress_bar, status, with_examples

#: Commands another change is rewriting right now; they join the conventions with it.
PENDING: dict[tuple[str, ...], str] = {}
#: What each of them still lacks.
PENDING_HELP = PENDING  # no Examples: block
PENDING_OUTPUT: set[tuple[str, ...]] = set()


def _leaf_commands() -> list[tuple[str, ...]]:
    def walk(command, path):
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                yield from walk(sub, (*path, name))
        else:
            yield path

    return list(walk(typer.main.get_command(cli.app), ()))


def _groups() -> list[tuple[str, ...]]:
    return [(), ("hw",)]


def _command(path: tuple[str, ...]):
    command = typer.main.get_command(cli.app)
    for name in path:
        command = command.commands[name]
    return command


def _mark_pending(paths, pending=PENDING):
    return [pytest.param(p, marks=pytest.mark.xfail(reason=PENDING[p], strict=False)) if p in pending else p
            for p in paths]


LEAVES = _leaf_commands()


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch):
    for var in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR", "TASDER_DEBUG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")  # colours would be used, were it a terminal


def invoke(capsys, *args: object) -> tuple[int, str, str]:
    code = run([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, expected_code: int = 2) -> str:
    assert code == expected_code, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


def test_every_command_is_covered():
    assert set(LEAVES) >= {("decompose",), ("patterns",), ("models",), ("profile",), ("apply",), ("train",),
                           ("hw", "eval"), ("hw", "compare")}


# --- --help ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", _mark_pending(_groups() + LEAVES, PENDING_HELP),
                         ids=lambda p: " ".join(p) or "tasder")
def test_help_ends_with_examples(capsys, path):
    code, out, err = invoke(capsys, *path, "--help")
    assert code == 0 and err == ""
    assert "Examples:" in out
    examples = out[out.index("Examples:"):].splitlines()[1:]
    assert examples and examples[0].strip().startswith("tasder ")  # one command per line, kept as written
    assert "\x1b" not in out


def test_with_examples_keeps_each_example_on_its_own_line():
    from rich.text import Text

    examples = ("tasder a --json", "tasder b -o x[bold].json")
    text = with_examples("Summary.\n\nMore.", *examples)
    assert text.startswith("Summary.\n\nMore.\n\nExamples:\n")
    lines = text.split("Examples:\n", 1)[1].splitlines()
    if typer.core.HAS_RICH:  # rich markup: rendered, each line is the example as written
        lines = [Text.from_markup(line).plain for line in lines]
    else:
        lines = [line for line in lines if line != "\b"]
    assert lines == [f"  {e}" for e in examples]


# --- --json and --output -----------------------------------------------------------------------


def _options(path) -> dict[str, list[str]]:
    return {p.name: [*p.opts, *p.secondary_opts] for p in _command(path).params}


@pytest.mark.parametrize("path", LEAVES, ids=" ".join)
def test_every_tabular_command_has_json(path):
    assert any("--json" in opts for opts in _options(path).values())


@pytest.mark.parametrize("path", LEAVES, ids=" ".join)
def test_short_o_always_means_output(path):
    for name, opts in _options(path).items():
        if "-o" in opts:
            if path in PENDING_OUTPUT:
                continue
            assert "--output" in opts, (path, name, opts)


@pytest.mark.parametrize("path", LEAVES, ids=" ".join)
def test_shared_options_have_one_spelling(path):
    """Same meaning, same flag: no command spells a shared option differently."""
    forbidden = {"--out": "--output", "--json-out": "--json", "--budget": "--mapper-budget",
                 "--random-seed": "--seed"}
    for param in _command(path).params:
        if getattr(param, "hidden", False):  # a former name kept working
            continue
        for opt in param.opts:
            if path in PENDING_OUTPUT and opt == "--out":
                continue
            assert opt not in forbidden, f"{' '.join(path)}: {opt} should be {forbidden[opt]}"


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(16, 16)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


@pytest.fixture
def tiny(monkeypatch):
    torch.manual_seed(0)
    net = _Net().eval()
    x = torch.randn(16, 16)
    entry = SimpleNamespace(
        name="tiny", description="a tiny MLP", model=net, metric="mean output",
        evaluate=lambda m: float(m(x).detach().mean()), calibration=[x[:8], x[8:]], layers=["fc1", "fc2"], metadata={},
    )
    monkeypatch.setattr(tasder.zoo, "load", lambda name: entry if name == "tiny" else tasder.zoo.model_entries()[name])
    return entry


WORKLOAD = "version: 0.1\nworkload:\n  name: tiny\n  layers:\n    - {name: fc, M: 32, K: 64, N: 16}\n"


def _json_cases(tmp_path) -> dict[str, list[str]]:
    weights = tmp_path / "w.pt"
    torch.save({"w": torch.randn(8, 16)}, weights)
    config = tmp_path / "c.yaml"
    config.write_text("version: 1\nlayers:\n  fc1: {series: '2:8', mode: W}\n")
    workload = tmp_path / "wl.yaml"
    workload.write_text(WORKLOAD)
    return {
        "decompose": ["decompose", str(weights), "-s", "2:8"],
        "patterns": ["patterns"],
        "models": ["models"],
        "profile": ["profile", "tiny", "-s", "2:8"],
        "apply": ["apply", "tiny", "--config", str(config)],
        "hw eval": ["hw", "eval", "--arch", "tc", "--workload", str(workload), "--mapper-budget", "30"],
        "hw compare": ["hw", "compare", "--designs", "stc", "--workload", "gemm:32x64x16:A=2:4",
                       "--mapper-budget", "30"],
    }  # train: tests/test_train_loop.py::test_cli_train_summary_and_json (it trains an epoch)


@pytest.mark.parametrize("case", ["decompose", "patterns", "models", "profile", "apply", "hw eval", "hw compare"])
def test_json_is_valid_and_output_writes_it_instead(capsys, tmp_path, tiny, case):
    args = _json_cases(tmp_path)[case]
    code, out, err = invoke(capsys, *args, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc
    target = tmp_path / "report.json"
    code, out, err = invoke(capsys, *args, "--json", "--output", target)
    assert code == 0 and out == "" and err == "", err  # "wrote FILE" is a status line: terminals only
    assert json.loads(target.read_text()) == doc
    code, out, err = invoke(capsys, *args)  # the table: plain text
    assert code == 0 and out and "\x1b" not in out + err
    assert all(line == line.rstrip() for line in out.splitlines())


def test_profile_series_option_and_its_former_name(capsys, tiny):
    code, out, _ = invoke(capsys, "profile", "tiny", "--series", "2:8,4:8", "--json")
    assert code == 0
    assert json.loads(out)["candidates"] == ["2:8", "4:8"]
    code, out2, _ = invoke(capsys, "profile", "tiny", "--candidates", "2:8", "-c", "4:8", "--json")
    assert code == 0 and json.loads(out2)["candidates"] == ["2:8", "4:8"]


def test_train_output_and_its_former_name_conflict(capsys, tmp_path):
    code, out, err = invoke(capsys, "train", "digits-cnn", "--out", tmp_path / "a.pt", "-o", tmp_path / "b.pt")
    assert "--out" in assert_one_line_error(code, out, err)


# --- exit codes --------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ["decompose", "{tmp}/missing.pt", "-s", "2:4"],
    ["decompose", "{tmp}/missing.pt"],  # a required option missing: usage
    ["patterns", "extra"],
    ["models", "--bogus"],
    ["profile", "no-such-model"],
    ["apply", "tiny", "--config", "{tmp}/missing.yaml"],
    ["train", "digits-cnn", "--pattern", "9:8"],
    ["hw", "eval", "--arch", "no-such-design", "--workload", "resnet50"],
    ["hw", "eval", "--arch", "tc", "--workload", "resnet50", "--mapper-budget", "0"],
    ["hw", "compare", "--designs", "tc", "--workload", "gemm:8x8"],
    ["no-such-command"],
], ids=lambda a: " ".join(a))
def test_bad_input_exits_2_with_one_error_line(capsys, tmp_path, tiny, args):
    code, out, err = invoke(capsys, *(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert_one_line_error(code, out, err, 2)
    assert list(tmp_path.iterdir()) == []


def test_internal_failure_exits_1_with_one_error_line(capsys, monkeypatch):
    def boom():
        raise RuntimeError("the registry\nis broken")

    monkeypatch.setattr(tasder.zoo, "model_entries", boom)
    line = assert_one_line_error(*invoke(capsys, "models"), expected_code=1)
    assert "RuntimeError: the registry is broken" in line and "TASDER_DEBUG=1" in line

    monkeypatch.setenv("TASDER_DEBUG", "1")  # the traceback, for a bug report
    with pytest.raises(RuntimeError, match="registry"):
        run(["models"])


def test_interrupt_exits_130(capsys, monkeypatch):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(tasder.zoo, "model_entries", interrupted)
    code, out, _ = invoke(capsys, "models")
    assert code == 130 and out == ""


def test_success_exits_0_and_help_too(capsys):
    assert invoke(capsys, "patterns")[0] == 0
    assert invoke(capsys, "hw", "--help")[0] == 0


# --- terminals and pipes -----------------------------------------------------------------------


def test_progress_and_status_only_on_a_terminal(capsys, monkeypatch):
    with progress_bar("working", 3) as advance:
        for _ in range(3):
            advance()
    status("wrote somewhere")
    assert capsys.readouterr() == ("", "")

    monkeypatch.setenv("FORCE_COLOR", "1")  # rich treats the stream as a terminal
    assert common.interactive()
    status("wrote somewhere")
    assert "wrote somewhere" in capsys.readouterr().err


def test_pipes_get_plain_text_without_ansi_codes(tmp_path):
    script = (
        "import sys\nfrom tasder.cli.app import run\n"
        "for argv in (['patterns'], ['models'], ['--help'], ['hw', 'eval', '--help'], ['models', '--bogus']):\n"
        "    print('exit', run(argv), flush=True)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "COLUMNS")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120,
                          cwd=tmp_path)
    assert proc.stdout.count("exit 0") == 4 and "exit 2" in proc.stdout, proc.stderr
    assert "\x1b" not in proc.stdout and "\x1b" not in proc.stderr
    assert proc.stderr.splitlines() == [proc.stderr.splitlines()[0]] and proc.stderr.startswith("error: ")
