"""What compiling the training step would buy: the runner's step, eager, against the same step compiled.

    python benchmarks/bench_compile.py --device cpu
    python benchmarks/bench_compile.py --device cuda

The step is :class:`lossbench.runner.TrainStep` on the Titanic grid's first minibatch (30 models: the
bodies, the heads, the three losses and their gradient by autograd, the written-out MLP backward, Adam).
It is traced once into a graph of aten operations, as the runner traces it on a CPU
(:func:`lossbench.graphs.record_graph` runs autograd's backward while it records, so the graph holds the
backward too), and the graph is handed to ``torch.compile``, which fuses its operations. The script prints:

- how many aten operations one step is (the graph's nodes, views included);
- the start-up: tracing, making TorchScript of the trace (what the runner runs on a CPU), then compiling
  (with the first call);
- the median time of one step, eager and compiled, timed in alternating blocks in one process;
- how many steps the compiled step needs to win back its start-up, in epochs of the grid;
- the largest difference between the two after one step, from the same weights.

The trace fixes the minibatch's shape; the weights and the optimizer's state (Adam's step count
included) are its inputs, updated in place. The runner does not compile: this script is the measurement
behind that choice (benchmarks/RESULTS.md). On a CPU the runner runs the same traced graph uncompiled,
from TorchScript (lossbench.graphs.Traced), which needs a fraction of a second instead of seconds.
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

from bench_runner import GRIDS, Parser, _positive, _sync, check_sizes, figures_json, run_script  # noqa: E402
from lossbench import graphs, losses as loss_registry, optim, runner  # noqa: E402
from lossbench.tasks import get as get_task  # noqa: E402


def optimizer_state(optimizer: optim.Adam | optim.SGD) -> list[torch.Tensor]:
    """Copies of the optimizer's tensors (after one step), so that every timed step starts from the same state."""
    return [s.clone() for s in optimizer.state()]


def block_us(fn, args: tuple, steps: int, device: torch.device) -> float:
    """The time of ``steps`` calls of ``fn(*args)``, in microseconds per call."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn(*args)
    _sync(device)
    return (time.perf_counter() - start) / steps * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="bench_compile.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--seeds", type=_positive, default=GRIDS["titanic"]["seeds"], help="models per loss (default: the target grid's 10)")
    parser.add_argument("--batch-size", type=_positive, default=GRIDS["titanic"]["batch_size"], help="examples in the timed minibatch (default: 64)")
    parser.add_argument("--optimizer", default="adam", choices=["adam", "sgd"], help="the optimizer whose step is timed (default: adam)")
    parser.add_argument("--blocks", type=_positive, default=7, help="timed blocks of each (they alternate; medians reported)")
    parser.add_argument("--steps", type=_positive, default=200, help="steps in a block")
    parser.add_argument("--backend", default="inductor", help="torch.compile's backend; 'eager' checks the plumbing without compiling")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    try:
        device = runner.resolve_device(args.device)
        cfg = runner.resolve_config("titanic", seeds=args.seeds, epochs=1, batch_size=args.batch_size, optimizer=args.optimizer)
        task = get_task("titanic").load(cfg)
        setups = runner.resolve_losses(("softmax_ce", "bce", "mse"), "handwritten", None, task, device, torch.float32)
        backends = torch.compiler.list_backends(exclude_tags=())
        if args.backend not in backends:
            raise ValueError(f"Expected `--backend` to be one of torch.compile's backends ({', '.join(backends)}), but got {args.backend!r}.")
    except ValueError as error:
        parser.error(str(error))
    check_sizes(task, setups, cfg, device, torch.float32, parser)
    seeds = list(range(cfg.seeds))
    prepared = runner.prepare(task, setups, cfg, seeds, "matched", device, torch.float32)
    x, targets = next(runner.minibatches(prepared.xs["train"], prepared.targets["train"], prepared.order[0], cfg.batch_size, len(setups)))
    models = prepared.models
    optimizer = runner.make_optimizer(models, setups, cfg)
    alive = torch.ones(models.flat.shape[0], dtype=torch.bool, device=device)
    eager = runner.TrainStep(task, setups, prepared.loss_fns, models, optimizer)

    with loss_registry.value_checks(False):
        eager(x, alive, *targets)  # one step, so that the optimizer's state exists
        start_flat, start_state = models.flat.detach().clone(), optimizer_state(optimizer)
        # the runner's traced step: a function of the weights and the optimizer's state, updated in place
        step = runner.TracedStep(eager, {cfg.batch_size}).pure
        inputs = (x, alive, *targets)

        start = time.perf_counter()
        graph = graphs.record_graph(step, start_flat.clone(), *[s.clone() for s in start_state], *inputs)
        trace_s = time.perf_counter() - start
        start = time.perf_counter()
        graphs._script(graph, (start_flat, *start_state, *inputs))
        script_s = time.perf_counter() - start
        compiled = torch.compile(graph, backend=args.backend, fullgraph=True, dynamic=False)
        flat, state = start_flat.clone(), [s.clone() for s in start_state]
        _sync(device)
        start = time.perf_counter()
        try:
            compiled_losses, _ = compiled(flat, *state, *inputs)
        except Exception as error:  # noqa: BLE001 - no compiler here, say: one line, not inductor's traceback
            # "backend='tvm' raised:", then why ("ImportError: Please install apache-tvm ..."), then where to read more
            lines = [line.strip() for line in str(error).splitlines() if line.strip() and not line.startswith("Set TORCHDYNAMO")]
            why = " ".join(lines[:2])
            print(f"bench_compile.py: error: torch.compile (backend {args.backend!r}) cannot compile the step here: "
                  f"{type(error).__name__}: {why}", file=sys.stderr)
            return 2
        _sync(device)
        compile_s = time.perf_counter() - start

        # the same step from the same weights, eager
        eager_flat, eager_state = start_flat.clone(), [s.clone() for s in start_state]
        eager_losses, _ = step(eager_flat, *eager_state, *inputs)
        weight_diff = (eager_flat - flat).abs().max().item()
        loss_diff = (eager_losses - compiled_losses).abs().max().item()

        # timing: the eager runner step and the compiled graph, in alternating blocks
        eager_times, compiled_times = [], []
        for _ in range(args.blocks):
            eager_times.append(block_us(eager, (x, alive, *targets), args.steps, device))
            compiled_times.append(block_us(compiled, (flat, *state, *inputs), args.steps, device))

    eager_us, compiled_us = statistics.median(eager_times), statistics.median(compiled_times)
    steps_per_epoch = math.ceil(len(task.train) / cfg.batch_size)
    default = runner.resolve_config("titanic")
    default_steps = default.epochs * math.ceil(len(task.train) / default.batch_size)  # whatever --batch-size was given
    saved_us = eager_us - compiled_us
    break_even_steps = (trace_s + compile_s) * 1e6 / saved_us if saved_us > 0 else math.inf
    figures = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "models": models.flat.shape[0],
        "batch_size": cfg.batch_size,
        "optimizer": cfg.optimizer,
        "backend": args.backend,
        "step_operations": sum(node.op == "call_function" for node in graph.graph.nodes),  # aten operations, views included
        "trace_s": trace_s,
        "script_s": script_s,
        "compile_s": compile_s,
        "eager_us": eager_us,
        "compiled_us": compiled_us,
        "eager_blocks_us": eager_times,
        "compiled_blocks_us": compiled_times,
        "speedup": eager_us / compiled_us,
        "steps_per_epoch": steps_per_epoch,
        "break_even_steps": break_even_steps,
        "break_even_epochs": break_even_steps / steps_per_epoch,
        "default_run_steps": default_steps,
        "max_weight_difference": weight_diff,
        "max_loss_difference": loss_diff,
        "command": "python benchmarks/bench_compile.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    if args.json:
        print(figures_json(figures))
        return 0
    print(f"titanic training step on {figures['device_name']} (torch {figures['torch']}, {figures['threads']} threads): "
          f"{figures['models']} models, batch {cfg.batch_size}, {cfg.optimizer}, backend {args.backend}")
    print(f"  one step is {figures['step_operations']} aten operations (views included), launched one by one when eager")
    print(f"  start-up: trace {trace_s:.2f} s (and {script_s:.2f} s to make TorchScript of it, as the runner does on a CPU), "
          f"compile and first call {compile_s:.2f} s")
    print(f"  eager     median {eager_us:,.0f} us a step ({args.blocks} blocks of {args.steps})")
    print(f"  compiled  median {compiled_us:,.0f} us a step: {figures['speedup']:.2f}x")
    if math.isfinite(break_even_steps):
        print(f"  the start-up is won back after {break_even_steps:,.0f} steps, {figures['break_even_epochs']:,.0f} epochs "
              f"of {steps_per_epoch} steps (a default Titanic run trains {figures['default_run_steps']:,} steps)")
    else:
        print("  the compiled step is not faster: its start-up is never won back")
    print(f"  largest difference after one step from the same weights: weights {weight_diff:.1e}, losses {loss_diff:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main, "bench_compile.py"))
