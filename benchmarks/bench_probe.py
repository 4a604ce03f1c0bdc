"""What tracing the per-epoch probe would buy on a CPU: the runner's probe, eager, against the same probe traced.

    python benchmarks/bench_probe.py
    python benchmarks/bench_probe.py --seeds 30

After every epoch the runner probes all models on the validation split (:meth:`lossbench.runner.Recorder.measure`:
the forward pass, dL/dz by autograd, the gradient allocation, the losses, accuracy and AUC). On a CPU the
training step runs from a TorchScript trace (:class:`lossbench.graphs.Traced`) and the probe runs eagerly.
This script traces the probe the same way (:func:`lossbench.graphs.record_graph`, then TorchScript) on the
Titanic grid's models and prints:

- the start-up of the trace (recording the operations, then TorchScript);
- the median time of one probe, eager and traced, timed in alternating blocks in one process;
- how many probes the trace needs to win back its start-up, against the probes of a default run;
- whether the two give the same records, bit for bit.

It is the measurement behind keeping the probe eager on a CPU (benchmarks/RESULTS.md).
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_runner import GRIDS, Parser, _positive, check_sizes, figures_json, run_script  # noqa: E402
from lossbench import graphs, losses as loss_registry, runner  # noqa: E402
from lossbench.tasks import get as get_task  # noqa: E402


def block_ms(fn, calls: int) -> float:
    """The time of ``calls`` calls of ``fn()``, in milliseconds per call."""
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e3


def same_records(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Whether two probes' records are equal bit for bit (NaN where the other has NaN)."""
    return a.keys() == b.keys() and all(torch.equal(a[k].nan_to_num(), b[k].nan_to_num()) and torch.equal(a[k].isnan(), b[k].isnan()) for k in a)


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="bench_probe.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=_positive, default=GRIDS["titanic"]["seeds"], help="models per loss (default: the target grid's 10)")
    parser.add_argument("--blocks", type=_positive, default=9, help="timed blocks of each (they alternate; medians reported)")
    parser.add_argument("--calls", type=_positive, default=20, help="probes in a block")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    cpu = torch.device("cpu")
    cfg = runner.resolve_config("titanic", seeds=args.seeds)
    task = get_task("titanic").load(cfg)
    setups = runner.resolve_losses(("softmax_ce", "bce", "mse"), "handwritten", None, task, cpu, torch.float32)
    check_sizes(task, setups, cfg, cpu, torch.float32, parser)
    prepared = runner.prepare(task, setups, cfg, list(range(cfg.seeds)), "matched", cpu, torch.float32)
    recorder = runner.Recorder(task, setups, prepared, cfg.epochs, None)
    m = prepared.models.flat.shape[0]
    train_loss = torch.linspace(0.3, 0.7, m)
    diverged = torch.zeros(m, dtype=torch.long)

    def probe_of(flat: torch.Tensor, train_loss: torch.Tensor, diverged: torch.Tensor) -> dict[str, torch.Tensor]:
        """The probe as a function of the weights, so that a trace takes them as an input, not a constant."""
        models = runner.Models(flat, prepared.models.shapes, prepared.models.n_losses)
        return recorder.measure(models, train_loss, diverged)

    flat = prepared.models.flat.detach()
    with loss_registry.value_checks(False):
        eager = lambda: recorder.measure(prepared.models, train_loss, diverged)  # noqa: E731 - the runner's own call
        traced = graphs.Traced(probe_of, warmup=0)
        start = time.perf_counter()
        from_trace = traced(flat, train_loss, diverged)  # traces, then runs the trace
        trace_s = time.perf_counter() - start
        if traced.failed is not None:
            print(f"bench_probe.py: the probe could not be traced: {traced.failed}", file=sys.stderr)
            return 1
        identical = same_records(eager(), from_trace)
        eager_times, traced_times = [], []
        for _ in range(args.blocks):
            eager_times.append(block_ms(eager, args.calls))
            traced_times.append(block_ms(lambda: traced(flat, train_loss, diverged), args.calls))

    eager_ms, traced_ms = statistics.median(eager_times), statistics.median(traced_times)
    saved_ms = eager_ms - traced_ms
    probes = cfg.epochs + 1  # before training, then after every epoch
    break_even = trace_s * 1e3 / saved_ms if saved_ms > 0 else math.inf
    figures = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "models": m,
        "validation_examples": len(task.val),
        "trace_s": trace_s,
        "eager_ms": eager_ms,
        "traced_ms": traced_ms,
        "eager_blocks_ms": eager_times,
        "traced_blocks_ms": traced_times,
        "speedup": eager_ms / traced_ms,
        "break_even_probes": break_even,
        "default_run_probes": probes,
        "saved_in_a_default_run_s": probes * saved_ms / 1e3 - trace_s,
        "identical_records": identical,
        "command": "python benchmarks/bench_probe.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    if args.json:
        print(figures_json(figures))
        return 0
    print(f"titanic per-epoch probe on cpu (torch {figures['torch']}, {figures['threads']} threads): "
          f"{m} models on {len(task.val)} validation examples")
    print(f"  start-up: trace {trace_s:.2f} s")
    print(f"  eager   median {eager_ms:.2f} ms a probe ({args.blocks} blocks of {args.calls})")
    print(f"  traced  median {traced_ms:.2f} ms a probe: {figures['speedup']:.2f}x; the same records bit for bit: {'yes' if identical else 'NO'}")
    if math.isfinite(break_even):
        print(f"  the trace is won back after {break_even:,.0f} probes; a default run has {probes}, "
              f"so tracing would save {figures['saved_in_a_default_run_s']:+.2f} s a run")
    else:
        print("  the traced probe is not faster: its start-up is never won back")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main, "bench_probe.py"))
