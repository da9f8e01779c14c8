"""``tasder decompose``, ``tasder patterns`` and ``tasder sweep``: TASD of tensors and the notations.

::

    tasder decompose weights.safetensors --series 2:8+1:8 [--dim -1] [--json] [--output FILE]
    tasder patterns [--json] [--output FILE]
    tasder sweep [minilm-weights] [--series 2:8 --series 4:8+2:8] [--json] [--output FILE]

torch and the decomposition are imported inside the commands (``tasder patterns`` needs neither).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from tasder.cli.common import (
    JsonOption,
    OutputOption,
    emit,
    human_bytes,
    progress_bar,
    stderr_console,
    table,
    text_width,
    with_examples,
    wrap_dotted,
)
from tasder.targets import DEFAULT_TARGET

if TYPE_CHECKING:
    import torch

    from tasder.sparsity.patterns import Series
    from tasder.tasd import TASDResult

__all__ = ["decompose_cmd", "patterns_cmd", "register", "sweep_cmd"]


def _shape(t: torch.Tensor) -> str:
    return "×".join(str(s) for s in t.shape)


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _metric_cells(effective_density: float, dropped_nnz: float, dropped_mag: float, rel_err: float,
                  packed: int, dense: int) -> list[str]:
    share = f" ({100.0 * packed / dense:.0f}%)" if dense else ""
    return [
        f"{effective_density:.3f}",
        f"{dropped_nnz:.2f}%",
        f"{dropped_mag:.2f}%",
        f"{rel_err:.4f}",
        f"{human_bytes(packed)}{share}",
    ]


def _series_table(title: str, caption: str | None = None) -> Table:
    t = table(title, caption)
    t.add_column("series")
    for column in ("eff. density", "dropped nnz", "dropped |x|", "rel. error", "packed (of dense)"):
        t.add_column(column, justify="right")
    return t


def _skip_reason(t: torch.Tensor, dim: int) -> str | None:
    """Why ``t`` cannot be decomposed along ``dim`` (None if it can)."""
    import torch

    if not t.is_floating_point():
        return f"dtype {_dtype(t)} is not floating point"
    if t.dim() == 0:
        return "0-dim tensor (a scalar)"
    if t.layout != torch.strided:
        return f"layout {t.layout} is not dense"
    if not -t.dim() <= dim < t.dim():
        return f"--dim {dim} is out of range for its {t.dim()} dimension(s)"
    return None


def _decompose_file(
    file: Path, series: Series, dim: int, allow_nonfinite: bool
) -> tuple[list[dict[str, object]], list[tuple[str, torch.Tensor, str]]]:
    """Records (see :func:`_record`) of the tensors in ``file`` that can be decomposed, and the
    ``(name, tensor, reason)`` of those skipped. Raises ValueError if none can be."""
    from tasder.io import load_tensors

    tensors = load_tensors(file)  # a missing or unreadable file fails before torch and the kernel load
    import torch

    from tasder.tasd import decompose

    todo: list[tuple[str, torch.Tensor]] = []
    skipped: list[tuple[str, torch.Tensor, str]] = []
    for name, t in tensors.items():
        reason = _skip_reason(t, dim)
        if reason is None:
            todo.append((name, t))
        else:
            skipped.append((name, t, reason))
    if not todo:
        if len(skipped) == 1:
            name, _, reason = skipped[0]
            raise ValueError(f"cannot decompose tensor {name!r} in {file}: {reason}")
        listed = "; ".join(f"{name!r}: {reason}" for name, _, reason in skipped)
        raise ValueError(f"no tensor in {file} can be decomposed ({listed})")
    if not allow_nonfinite:  # a data problem, not a misfit: stop rather than skip
        for name, t in todo:
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                raise ValueError(
                    f"tensor {name!r} in {file} holds {bad} NaN/Inf value(s); clean it or pass "
                    f"--allow-nonfinite"
                )
    records: list[dict[str, object]] = []
    with progress_bar(f"TASD {series}", len(todo)) as advance:
        for name, t in todo:
            try:
                result = decompose(t, series, dim=dim, allow_nonfinite=allow_nonfinite)
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"tensor {name!r} in {file}: {exc}") from None
            records.append(_record(name, result))  # keep the numbers, let the terms go
            advance()
    return records, skipped


def _record(name: str, result: TASDResult) -> dict[str, object]:
    x = result.input
    return {
        "name": name,
        "shape": list(x.shape),
        "dtype": _dtype(x),
        "series": str(result.series),
        "dim": result.dim,
        **result.metrics.as_dict(),
    }


DECOMPOSE_HELP = with_examples(
    """Decompose every tensor in FILE into a TASD series and report what it drops.

    Tensors that cannot be decomposed (integers, scalars, a --dim out of range) are skipped and
    listed; if none can be, the command fails with exit code 2.""",
    "tasder decompose weights.safetensors --series 2:8+1:8",
    "tasder decompose model.pt -s 2:4 --dim 0 --json -o report.json",
)


def decompose_cmd(
    file: Annotated[Path, typer.Argument(help="A .pt/.pth, .safetensors or .npy file of tensors.",
                                         show_default=False)],
    series: Annotated[str, typer.Option("--series", "-s", help="TASD series, e.g. 2:8+1:8 or 2:4.",
                                        show_default=False)],
    dim: Annotated[int, typer.Option("--dim", "-d", help="Dimension the G:H groups run along.")] = -1,
    as_json: JsonOption = False,
    allow_nonfinite: Annotated[
        bool, typer.Option("--allow-nonfinite", help="Accept NaN/Inf (they rank above every value).")
    ] = False,
    output: OutputOption = None,
) -> None:
    """Decompose every tensor in FILE into a TASD series and report what it drops."""
    from tasder.sparsity.notation import parse_series

    parsed = parse_series(series)
    records, skipped = _decompose_file(file, parsed, dim, allow_nonfinite)

    if as_json:
        for name, t, reason in skipped:
            stderr_console().print(f"skipped {name!r} ({_shape(t) or 'scalar'}): {reason}",
                                   markup=False, soft_wrap=True)
        emit(None, records, output)
        return

    def render(console: Console) -> None:
        headers = ["shape\ndtype", "input\ndensity", "eff.\ndensity", "dropped\nnnz", "dropped\n|x|",
                   "rel.\nerror", "packed", "dense"]
        rows = []
        for r in records:
            shape = "×".join(str(n) for n in r["shape"])
            rows.append((str(r["name"]), [
                f"{shape}\n{r['dtype']}", f"{r['input_density']:.3f}",
                f"{r['effective_density']:.3f}", f"{r['dropped_nonzeros_pct']:.2f}%",
                f"{r['dropped_magnitude_pct']:.2f}%", f"{r['relative_error']:.4f}",
                human_bytes(r["packed_nbytes"]), human_bytes(r["dense_nbytes"]),
            ]))
        fixed = [max(text_width(t) for t in [h, *(cells[i] for _, cells in rows)])
                 for i, h in enumerate(headers)]
        # Every column but the last is followed by a 1-cell pad and a 1-cell divider.
        name_width = max(16, console.width - sum(fixed) - 2 * len(fixed))
        console.print(
            f"{file.name}: TASD {parsed} (effective density {parsed.effective_density:.3f}), "
            f"groups along dim {dim}", markup=False,
        )
        t = table()
        t.add_column("tensor", overflow="fold", max_width=name_width)
        t.add_column(headers[0], no_wrap=True)
        for header in headers[1:]:
            t.add_column(header, justify="right", no_wrap=True)
        for name, cells in rows:
            t.add_row(wrap_dotted(name, name_width), *cells)
        console.print(t)
        if skipped:
            console.print(f"skipped {len(skipped)} tensor(s):", markup=False)
            for name, tensor, reason in skipped:
                console.print(f"  {name} ({_shape(tensor) or 'scalar'}, {_dtype(tensor)}): {reason}", markup=False)

    emit(render, None, output)


PATTERNS_HELP = with_examples(
    "List the sparsity notations tasder understands, with examples and their density.",
    "tasder patterns",
    "tasder patterns --json",
)


def patterns_cmd(as_json: JsonOption = False, output: OutputOption = None) -> None:
    from tasder.sparsity.notation import NOTATION_EXAMPLES, parse_series

    rows = [(example, parse_series(example).effective_density, meaning) for example, meaning in NOTATION_EXAMPLES]
    if as_json:
        emit(None, [{"notation": n, "density": d, "meaning": m} for n, d, m in rows], output)
        return

    def render(console: Console) -> None:
        t = table("Sparsity notations (use them with --series)")
        t.add_column("notation", no_wrap=True)
        t.add_column("density", justify="right", no_wrap=True)
        t.add_column("meaning", ratio=1)
        for notation, density, meaning in rows:
            t.add_row(notation, f"{density:.4g}", meaning)
        console.print(t)

    emit(render, None, output)


SWEEP_HELP = with_examples(
    f"""TASD of a built-in tensor workload with several series: the pooled total per series and the
    dropped nonzeros per kind of matrix (layers pooled); --verbose adds a table per matrix, --json every number.

    The default workload is the real all-MiniLM-L6-v2 encoder (36 Linear weight matrices), decomposed
    with every series of the {DEFAULT_TARGET} target.""",
    "tasder sweep",
    "tasder sweep minilm-weights -s 2:8 -s 4:8+2:8 --verbose",
    "tasder sweep --json -o sweep.json",
)


def matrix_kind(name: str) -> str:
    """``encoder.layer.3.attention.self.query`` → ``encoder.layer.*.attention.self.query``: a name with
    its all-digit parts (layer indices) as ``*``, so the same matrix of every layer pools into one row."""
    return ".".join("*" if part.isdigit() else part for part in name.split("."))


def sweep_cmd(
    workload_name: Annotated[str, typer.Argument(metavar="WORKLOAD", help="A built-in tensor workload.")]
    = "minilm-weights",
    series: Annotated[
        list[str] | None,
        typer.Option("--series", "-s", show_default=False,
                     help=f"A TASD series to try (repeat the option); default: every series of the "
                     f"{DEFAULT_TARGET} target (its YAML lists the patterns)."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also a table per matrix (every series).")]
    = False,
    as_json: JsonOption = False,
    output: OutputOption = None,
) -> None:
    """TASD of a built-in tensor workload with several series."""
    from tasder.sparsity.notation import parse_series
    from tasder.targets import target_series
    from tasder.tasd import DecompositionSums, decompose, tensor_sums
    from tasder.zoo import get_workload

    parsed: dict[str, Series] = {}
    for spec in series or target_series(DEFAULT_TARGET):
        s = parse_series(spec)
        parsed.setdefault(str(s), s)
    workload = get_workload(workload_name)
    weights = workload.load()
    n_params = sum(w.numel() for w in weights.values())

    # Only numbers are kept: holding every result's terms would cost ~(order+1)x the weights per series.
    per_matrix: dict[str, list[tuple[str, DecompositionSums]]] = {}
    totals = {key: DecompositionSums() for key in parsed}
    records: list[dict[str, object]] = []
    with progress_bar("TASD of MiniLM weights", len(weights) * len(parsed)) as advance:
        for name, w in weights.items():
            rows = per_matrix.setdefault(name, [])
            input_sums = tensor_sums(w)
            for key, s in parsed.items():
                result = decompose(w, s, dim=workload.dim)
                sums = DecompositionSums.of(result, input_sums)
                totals[key] = totals[key] + sums
                rows.append((key, sums))
                records.append(_record(name, result))
                advance()

    dense_bytes = sum(w.numel() * w.element_size() for w in weights.values())
    header = (
        f"{workload.model}: {len(weights)} encoder Linear weight matrices, {n_params:,} parameters\n"
        f"({human_bytes(dense_bytes)} dense); TASD groups along the input dim (dim={workload.dim}), "
        f"{len(parsed)} series"
    )
    if as_json:
        doc = {
            "model": workload.model,
            "workload": workload.name,
            "matrices": len(weights),
            "parameters": n_params,
            "dim": workload.dim,
            "series": list(parsed),
            "results": records,
            "totals": [{"series": key, **totals[key].summary()} for key in parsed],
        }
        emit(None, doc, output)
        return

    kinds: dict[str, dict[str, DecompositionSums]] = {}
    for name, rows in per_matrix.items():
        pooled = kinds.setdefault(matrix_kind(name), {})
        for key, sums in rows:
            pooled[key] = pooled[key] + sums if key in pooled else sums

    def render(console: Console) -> None:
        console.print(header, markup=False)
        console.print()
        if not verbose:
            by_kind = table(f"Dropped nonzeros / dropped |x|, % per matrix kind ({len(kinds)} kinds; layers pooled "
                            f"as *)", caption="--verbose: a table per matrix; --json: every number")
            name_width = max(16, console.width - 11 * len(parsed) - 1)
            by_kind.add_column("matrix", overflow="fold", max_width=name_width)
            for key in parsed:
                by_kind.add_column(key, justify="right", no_wrap=True)
            for kind, pooled in kinds.items():
                count = sum(1 for name in per_matrix if matrix_kind(name) == kind)
                by_kind.add_row(wrap_dotted(f"{kind} (×{count})" if count > 1 else kind, name_width),
                                *(f"{pooled[key].dropped_nonzeros_pct:.1f}/{pooled[key].dropped_magnitude_pct:.1f}"
                                  for key in parsed))
            console.print(by_kind)
            console.print()
        for name, rows in per_matrix.items() if verbose else ():
            w = weights[name]
            per = _series_table(f"{name} ({_shape(w)}, {human_bytes(w.numel() * w.element_size())} dense)")
            for key, sums in rows:
                per.add_row(key, *_metric_cells(
                    sums.effective_density, sums.dropped_nonzeros_pct, sums.dropped_magnitude_pct,
                    sums.relative_error, sums.packed_nbytes, sums.dense_nbytes))
            console.print(per)
            console.print()
        total_table = _series_table(
            f"TOTAL over {len(weights)} matrices ({n_params:,} parameters)",
            caption="pooled, not averaged: Σdropped/Σnnz, Σ|r|/Σ|x|, √(Σ‖r‖²/Σ‖x‖²), Σbytes",
        )
        total_table.title_style = "bold"
        for key in parsed:
            t = totals[key]
            total_table.add_row(key, *_metric_cells(
                t.effective_density, t.dropped_nonzeros_pct, t.dropped_magnitude_pct,
                t.relative_error, t.packed_nbytes, t.dense_nbytes))
        console.print(total_table)

    emit(render, None, output)


def register(app: typer.Typer) -> None:
    """Add ``decompose``, ``patterns`` and ``sweep`` to ``app``."""
    app.command("decompose", help=DECOMPOSE_HELP)(decompose_cmd)
    app.command("patterns", help=PATTERNS_HELP)(patterns_cmd)
    app.command("sweep", help=SWEEP_HELP)(sweep_cmd)
