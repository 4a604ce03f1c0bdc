"""Time the batched runner against the plain one-model-at-a-time loop, side by side in one process.

    python benchmarks/bench_runner.py --task titanic --device cpu
    python benchmarks/bench_runner.py --task multilabel --device cuda --seeds 5 --epochs 3

Both engines train the same models (same initial weights, seeds, minibatches, optimizer, epochs and
batch size) and record the same per-epoch measurements. For each engine it prints the median wall time of
several repeats (after warm-up runs, whose times are reported and excluded), the throughput in
model-epochs/s (and model-images/s for image tasks: training images seen per second, summed over models),
the ratio of the two, the share of the batched time spent recording (the per-epoch probe) and the peak
memory (the whole process's peak RSS, both engines included, and the batched runner's CUDA peak on a
GPU, in MiB). On a GPU the batched runner replays its step and its probe as CUDA graphs;
`--no-cuda-graphs` launches every operation on its own, to see what the graphs buy. On a CPU it runs an
MLP's training step from a TorchScript trace; `--no-cpu-trace` runs it eagerly. Tracing the step and
making its TorchScript (a few hundredths of a second) are part of each timed run, as of a one-off run a
user makes (a process that reruns a comparison reuses the TorchScript; here each run makes its own).

With `--loop-epochs`, the plain loop trains fewer epochs and its throughput is per epoch (its cost per
epoch is constant); what it does once per run (building the models, the probe before the first epoch)
is then spread over fewer epochs, which makes the loop look a little slower (a few percent at 1 epoch of
an image grid). The two engines' runs are not interleaved: compare figures from one command.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import resource
import statistics
import sys
import time
import typing
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lossbench import graphs, runner, settings  # noqa: E402
from lossbench.loop import train_one_at_a_time  # noqa: E402
from lossbench.tasks import get as get_task  # noqa: E402

GRIDS = {  # the grids the performance targets are stated for
    "titanic": dict(seeds=10, epochs=100, batch_size=64),
    "multilabel": dict(seeds=5, epochs=3, batch_size=128),
    "mammography": dict(seeds=5, epochs=3, batch_size=128),
}


class Parser(argparse.ArgumentParser):
    """argparse, saying a mistake in one line (and exit code 2), as the ``lossbench`` command does."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def figures_json(figures: dict) -> str:
    """The figures as strict JSON: a figure that is not a number (a break-even never reached) is null.

    >>> print(figures_json({"speedup": 0.8, "break_even": float("inf")}))
    {
      "speedup": 0.8,
      "break_even": null
    }
    """
    def strict(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: strict(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [strict(v) for v in value]
        return value

    return json.dumps(strict(figures), indent=2, allow_nan=False)


def run_script(main: typing.Callable[[], int], prog: str) -> int:
    """``main()``'s exit code; Ctrl-C is one line and exit code 130, not a traceback."""
    try:
        return main()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def check_sizes(task, setups, cfg, device, dtype, parser: argparse.ArgumentParser) -> None:
    """A grid that cannot fit in memory (or whose counts torch cannot hold) is refused in one line, as ``compare`` does."""
    try:
        runner.check_fits(task, setups, cfg, device, dtype)
    except (ValueError, OverflowError) as error:
        parser.error(str(error))


def _threads(text: str) -> int:
    """An argparse type: a count of threads torch can take (a count in the millions crashes the process)."""
    value = _positive(text)
    if value > settings.MAX_THREADS:
        raise argparse.ArgumentTypeError(f"expected at most {settings.MAX_THREADS} threads (8 per core here), but got {text!r}")
    return value


def _positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, but got {text!r}")
    return value


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_rss_mb() -> float:
    """The process's peak resident memory so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rate(value: float) -> str:
    """A throughput: whole numbers with thousands separators, three significant digits below 100.

    >>> _rate(12345.6), _rate(41.27), _rate(0.0123)
    ('12,346', '41.3', '0.0123')
    """
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def time_engine(engine, task, setups, cfg, seeds, device, dtype, repeats: int) -> dict:
    """Warm up (one run), then time ``repeats`` runs; also time the recording (the per-epoch probe) of each run."""
    record_time = [0.0]
    original = runner.Recorder.__call__

    def timed_record(self, *args, **kwargs):
        _sync(device)
        start = time.perf_counter()
        original(self, *args, **kwargs)
        _sync(device)
        record_time[0] += time.perf_counter() - start

    runner.Recorder.__call__ = timed_record
    try:
        graphs.forget_scripts()  # every run makes its own TorchScript, as a one-off run does
        _sync(device)
        start = time.perf_counter()
        engine(task, setups, cfg, seeds, "matched", device, dtype)
        _sync(device)
        warmup = time.perf_counter() - start
        walls, records = [], []
        for _ in range(repeats):
            record_time[0] = 0.0
            graphs.forget_scripts()
            _sync(device)
            start = time.perf_counter()
            trained = engine(task, setups, cfg, seeds, "matched", device, dtype)
            _sync(device)
            walls.append(time.perf_counter() - start)
            records.append(record_time[0])
    finally:
        runner.Recorder.__call__ = original
    figures = {"warmup_s": warmup, "median_s": statistics.median(walls), "walls_s": walls, "record_share": statistics.median(r / w for r, w in zip(records, walls))}
    for key in ("cuda_graphs", "cpu_trace"):  # the batched runner says whether it replayed a recorded step, or why not
        if key in trained:
            figures[key] = trained[key]
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="bench_runner.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="titanic", choices=list(GRIDS), help="the task whose grid is timed (default: titanic)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--losses", default="softmax_ce,bce,mse", help="comma-separated losses (default: softmax_ce,bce,mse)")
    parser.add_argument("--seeds", type=_positive, default=None, help="models per loss (default: the target grid's)")
    parser.add_argument("--epochs", type=_positive, default=None, help="epochs (default: the target grid's)")
    parser.add_argument("--batch-size", type=_positive, default=None, help="examples per minibatch (default: the target grid's)")
    parser.add_argument("--loop-epochs", type=_positive, default=None, help="time the plain loop on another number of epochs, usually fewer, as it is slow (its throughput is per epoch); default: the same epochs")
    parser.add_argument("--repeats", type=_positive, default=3, help="timed repeats of the batched runner (median reported)")
    parser.add_argument("--loop-repeats", type=_positive, default=3, help="timed repeats of the plain loop (median reported)")
    parser.add_argument("--skip-loop", action="store_true", help="time the batched runner only")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"], help="the models' number type (default: float32)")
    parser.add_argument("--threads", type=_threads, default=None, help=f"torch's CPU threads, 1 to {settings.MAX_THREADS} (default: torch's choice, one per core)")
    parser.add_argument("--no-cuda-graphs", action="store_true", help="on a GPU, launch every operation of the batched runner on its own instead of replaying CUDA graphs")
    parser.add_argument("--no-cpu-trace", action="store_true", help="on a CPU, run the batched runner's training step eagerly instead of from its TorchScript trace")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    grid = dict(GRIDS[args.task])
    for key in ("seeds", "epochs", "batch_size"):
        if getattr(args, key) is not None:
            grid[key] = getattr(args, key)
    try:  # a bad device or loss name: one line, exit code 2
        device = runner.resolve_device(args.device)
        dtype = getattr(torch, args.dtype)
        cfg = runner.resolve_config(args.task, **grid)
        task = get_task(args.task).load(cfg)
        losses = args.losses.split(",")
        setups = runner.resolve_losses(losses, "handwritten", None, task, device, dtype)
    except ValueError as error:
        parser.error(str(error))
    check_sizes(task, setups, cfg, device, dtype, parser)
    seeds = list(range(cfg.seeds))
    models = len(losses) * len(seeds)
    images = task.train.x.ndim == 4
    n_train = len(task.train)

    figures: dict = {
        "task": args.task,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "models": models,
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "train_examples": n_train,
        "command": "python benchmarks/bench_runner.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    batched = time_engine(
        functools.partial(runner.train, cuda_graphs=not args.no_cuda_graphs, cpu_trace=not args.no_cpu_trace),
        task, setups, cfg, seeds, device, dtype, args.repeats,
    )
    figures["batched"] = batched
    figures["batched"]["model_epochs_per_s"] = models * cfg.epochs / batched["median_s"]
    if images:
        figures["batched"]["model_images_per_s"] = models * cfg.epochs * n_train / batched["median_s"]
    figures["peak_rss_mb_after_batched"] = _peak_rss_mb()
    if device.type == "cuda":
        figures["cuda_peak_mb_batched"] = torch.cuda.max_memory_allocated(device) / 2**20

    if not args.skip_loop:
        loop_cfg = dataclasses.replace(cfg, epochs=args.loop_epochs or cfg.epochs)
        loop = time_engine(train_one_at_a_time, task, setups, loop_cfg, seeds, device, dtype, args.loop_repeats)
        loop["epochs"] = loop_cfg.epochs
        loop["model_epochs_per_s"] = models * loop_cfg.epochs / loop["median_s"]
        if images:
            loop["model_images_per_s"] = models * loop_cfg.epochs * n_train / loop["median_s"]
        figures["loop"] = loop
        figures["speedup"] = figures["batched"]["model_epochs_per_s"] / loop["model_epochs_per_s"]
    figures["peak_rss_mb"] = _peak_rss_mb()

    if args.json:
        print(figures_json(figures))
        return 0
    print(f"{args.task} on {figures['device_name']} (torch {figures['torch']}, {figures['threads']} threads): "
          f"{models} models x {cfg.epochs} epochs, batch {cfg.batch_size}, {n_train} training examples"
          + (f"; CUDA graphs: {batched['cuda_graphs']}" if device.type == "cuda" else f"; CPU trace: {batched['cpu_trace']}"))
    rows = [("batched", figures["batched"])] + ([("plain loop", figures["loop"])] if "loop" in figures else [])
    for name, f in rows:
        extra = f", {_rate(f['model_images_per_s'])} model-images/s" if images else ""
        epochs = f" ({f['epochs']} epoch{'s' if f['epochs'] != 1 else ''})" if "epochs" in f and f["epochs"] != cfg.epochs else ""
        print(f"  {name:<10} median {f['median_s']:.3f} s of {len(f['walls_s'])}{epochs}, warm-up {f['warmup_s']:.3f} s: "
              f"{_rate(f['model_epochs_per_s'])} model-epochs/s{extra}; recording {100 * f['record_share']:.1f}% of the time")
    if "speedup" in figures:
        print(f"  batched / plain loop: {figures['speedup']:.1f}x")
    print(f"  peak RSS {figures['peak_rss_mb']:.0f} MiB (the whole process)"
          + (f", CUDA peak {figures['cuda_peak_mb_batched']:.0f} MiB (the batched runner)" if "cuda_peak_mb_batched" in figures else ""))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main, "bench_runner.py"))
