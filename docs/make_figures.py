"""Make the two README figures: gradient allocation on Titanic, accuracy against the threshold on the multi-label task.

Run from the repository root:

    python docs/make_figures.py            # the tasks' full default runs: several minutes on a CPU
    python docs/make_figures.py --quick    # a smoke test of this script in seconds; not figures to commit

It writes ``docs/gradient_allocation_titanic.png`` and ``docs/accuracy_vs_threshold_multilabel.png``
(or into ``--out``). Each figure is drawn by :mod:`lossbench.plots` from one ``lossbench.compare`` run
with the task's defaults, so the numbers in them are those the notebooks and the CLI produce with the
same settings; the figure titles say the task and the number of seeds.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # draw with this checkout's lossbench, installed or not

FIGURES = {
    "gradient_allocation_titanic.png": "where softmax_ce, bce and mse send their gradient on Titanic",
    "accuracy_vs_threshold_multilabel.png": "Hamming and exact-match accuracy against the threshold on multi-label digit canvases",
}
"""The files written, and what each one shows."""


def make_figures(out: Path, quick: bool = False, device: str = "auto") -> list[Path]:
    """Train the two comparisons and write the README figures into ``out``; returns the paths written.

    1. Titanic, softmax_ce vs bce vs mse: :func:`lossbench.plots.gradient_allocation`;
    2. multi-label canvases, the same three losses: :func:`lossbench.plots.accuracy_vs_threshold` on the
       test split, with each loss's threshold chosen on the validation split marked.

    >>> paths = make_figures(Path("/tmp/lossbench-figures"), quick=True)  # doctest: +SKIP
    >>> [p.name for p in paths]  # doctest: +SKIP
    ['gradient_allocation_titanic.png', 'accuracy_vs_threshold_multilabel.png']
    """
    import lossbench
    from lossbench import plots

    out.mkdir(parents=True, exist_ok=True)
    losses = ("softmax_ce", "bce", "mse")
    drawings = {
        "gradient_allocation_titanic.png": ("titanic", lambda result: plots.gradient_allocation(result)),
        "accuracy_vs_threshold_multilabel.png": ("multilabel", lambda result: plots.accuracy_vs_threshold(result, split="test")),
    }
    written = []
    for name, (task, draw) in drawings.items():
        start = time.perf_counter()
        result = lossbench.compare(task, losses=losses, quick=quick, device=device, progress=True)
        path = out / name
        draw(result).savefig(path, dpi=plots.DPI)
        print(f"{path}: {FIGURES[name]} ({len(result.runs)} models, {time.perf_counter() - start:.0f} s)")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: ``python docs/make_figures.py [--quick] [--out DIR] [--device DEVICE]``; returns the exit code.

    >>> main(["--quick", "--out", "/tmp/lossbench-figures"])  # doctest: +SKIP
    0
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny runs that check the script in seconds (do not commit their figures)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="folder for the PNG files (default: docs/)")
    parser.add_argument("--device", default="auto", help="'auto' (CUDA when present, else CPU), 'cpu' or 'cuda'")
    args = parser.parse_args(argv)
    from lossbench.runner import resolve_device

    try:  # a device this machine lacks, or an --out that is a file: one line and exit code 2
        resolve_device(args.device)
    except ValueError as error:
        parser.error(str(error))
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"Expected --out to be a folder, but {args.out} is a file.")
    make_figures(args.out, quick=args.quick, device=args.device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
