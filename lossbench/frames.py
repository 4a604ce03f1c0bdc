"""From trained models to a :class:`~lossbench.results.Result`: the runs, history, thresholds, calibration and summary tables, and config.json's contents."""
from __future__ import annotations

import dataclasses
import platform
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from lossbench import gradients, stats, thresholds as thr
from lossbench.results import Result
from lossbench.tasks import TaskData, TrainingDefaults

if TYPE_CHECKING:
    from lossbench.runner import LossSetup


def history_frame(setups: list[LossSetup], seeds: list[int], task: TaskData, history: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per model and epoch from the per-epoch records ``(epochs, models[, bins or labels])``: a column per
    record, per confidence bin (``grad_confidence_wrong[0.9-1.0]``) and, with several outputs, per label."""
    epochs, m = history["val_loss"].shape[:2]
    index = pd.MultiIndex.from_product([range(epochs), range(m)], names=["epoch", "model"])
    columns: dict[str, np.ndarray] = {
        "loss": np.tile(np.repeat([s.name for s in setups], len(seeds)), epochs),
        "seed": np.tile(np.tile(seeds, len(setups)), epochs),
    }
    for key, values in history.items():
        if values.ndim == 2:
            columns[key] = values.reshape(-1)
        elif key == "grad_label_share":
            if task.n_outputs > 1:
                for k, label in enumerate(task.label_names):
                    columns[f"grad_label_share[{label}]"] = values[:, :, k].reshape(-1)
        else:  # confidence bins
            for b, label in enumerate(gradients.CONFIDENCE_BINS):
                columns[f"{key}[{label}]"] = values[:, :, b].reshape(-1)
    frame = pd.DataFrame(columns, index=index).reset_index()
    first = ["loss", "seed", "epoch", "model"]
    return frame[first + [c for c in frame.columns if c not in first]]


def assemble(
    task: TaskData,
    setups: list[LossSetup],
    cfg: TrainingDefaults,
    seeds: list[int],
    trained: dict,
    scores: dict[str, torch.Tensor],
    device: torch.device,
    dtype: torch.dtype,
    threshold_points: int,
    baseline: str,
    options: dict,
) -> Result:
    """The Result of a comparison from the trainer's records and the trained models' ``scores`` on the
    validation and test splits (``{"val": (models, N, K), "test": ...}``): every metric of ``runs`` is
    computed here, once, from those scores and the splits' targets."""
    history = history_frame(setups, seeds, task, trained["history"])
    grid = thr.threshold_grid(threshold_points)
    splits = {}
    for name in ("val", "test"):
        y = getattr(task, name).y.to(device=device, dtype=dtype)
        splits[name] = {"y": y, "scores": scores[name], "sweep": thr.sweep(scores[name], y, grid),
                        "half": thr.sweep(scores[name], y, torch.tensor([0.5]))}
    chosen_by = thr.selection_metric(splits["val"]["sweep"], options.get("threshold_metric", "accuracy"))
    best = thr.best_threshold_index(chosen_by, grid).cpu().numpy()
    multi = task.n_outputs > 1
    average = thr.auc_average(task.kind)
    m = len(setups) * len(seeds)
    rows = np.arange(m)
    test_sweep = {k: v.cpu().numpy() for k, v in splits["test"]["sweep"].items()}
    val_sweep = {k: v.cpu().numpy() for k, v in splits["val"]["sweep"].items()}
    # "@0.5" is at 0.5 itself, whatever the grid holds
    test_half = {k: v.cpu().numpy()[:, 0] for k, v in splits["test"]["half"].items()}
    val_half = {k: v.cpu().numpy()[:, 0] for k, v in splits["val"]["half"].items()}
    # a model with NaN validation scores (its weights went NaN) has no best threshold
    best_threshold = np.where(thr.unscored(splits["val"]["scores"]).cpu().numpy(), np.nan, grid.numpy()[best])
    test_scores, test_y = splits["test"]["scores"], splits["test"]["y"]
    calib = thr.calibration(test_scores, test_y)
    final = history[history["epoch"] == history["epoch"].max()].set_index("model")

    runs = pd.DataFrame(
        {
            "loss": np.repeat([s.name for s in setups], len(seeds)),
            "family": np.repeat([s.family for s in setups], len(seeds)),
            "impl": np.repeat([s.impl for s in setups], len(seeds)),
            "seed": np.tile(seeds, len(setups)),
            "model": rows,
            "diverged": trained["diverged_epoch"] > 0,
            "diverged_epoch": np.where(trained["diverged_epoch"] > 0, trained["diverged_epoch"], np.nan),
            # the mean of the last epoch's minibatch losses; a diverged model stopped before it and has none
            "final_train_loss": np.where(trained["diverged_epoch"] > 0, np.nan, final["train_loss"].reindex(rows).to_numpy()),
            "val_loss": final["val_loss"].reindex(rows).to_numpy(),
            "val_accuracy": val_half["accuracy"],
            "val_auc": thr.auc(splits["val"]["scores"], splits["val"]["y"], average).cpu().numpy(),
            "best_threshold": best_threshold,
            "val_accuracy_best": val_sweep["accuracy"][rows, best],
            "test_accuracy": test_half["accuracy"],
            "test_accuracy_best": test_sweep["accuracy"][rows, best],
            "test_auc": thr.auc(test_scores, test_y, average).cpu().numpy(),
            "test_f1": test_half["f1"],
            "test_f1_best": test_sweep["f1"][rows, best],
            "test_sensitivity": test_half["sensitivity"],
            "test_specificity": test_half["specificity"],
            "test_sensitivity_best": test_sweep["sensitivity"][rows, best],
            "test_specificity_best": test_sweep["specificity"][rows, best],
            "test_ece": calib["ece"].cpu().numpy(),
        }
    )
    if multi:
        runs["test_exact_match"] = test_half["exact_match"]
        runs["test_exact_match_best"] = test_sweep["exact_match"][rows, best]

    threshold_frames = []
    for split_name, sweep in (("val", val_sweep), ("test", test_sweep)):
        t = len(grid)
        frame = pd.DataFrame(
            {
                "loss": np.repeat(runs["loss"].to_numpy(), t),
                "seed": np.repeat(runs["seed"].to_numpy(), t),
                "split": split_name,
                "threshold": np.tile(grid.numpy(), m),
            }
        )
        for metric in thr.METRICS:
            if metric == "exact_match" and not multi:
                continue
            frame[metric] = sweep[metric].reshape(-1)
        threshold_frames.append(frame)
    thresholds_frame = pd.concat(threshold_frames, ignore_index=True)

    bins = calib["count"].shape[1]
    edges = np.linspace(0, 1, bins + 1)
    calibration_frame = pd.DataFrame(
        {
            "loss": np.repeat(runs["loss"].to_numpy(), bins),
            "seed": np.repeat(runs["seed"].to_numpy(), bins),
            "bin": np.tile(np.arange(bins), m),
            "bin_low": np.tile(edges[:-1], m),
            "bin_high": np.tile(edges[1:], m),
            "mean_predicted": calib["mean_predicted"].cpu().numpy().reshape(-1),
            "fraction_positive": calib["fraction_positive"].cpu().numpy().reshape(-1),
            "count": calib["count"].cpu().numpy().reshape(-1).astype(int),
        }
    )
    summary_metrics = [c for c in runs.columns if c not in ("loss", "family", "impl", "seed", "model", "diverged_epoch")]
    runs_numeric = runs.assign(diverged=runs["diverged"].astype(float))
    summary = stats.summarize(runs_numeric, summary_metrics, baseline)

    config = {
        "task": task.name,
        "task_kind": task.kind,
        "task_description": task.description,
        "task_provenance": task.provenance,
        "label_names": list(task.label_names),
        "task_config": _jsonable(dataclasses.asdict(cfg)) if dataclasses.is_dataclass(cfg) else {},
        "task_notes": _jsonable(task.notes),
        "body": {"type": type(task.body).__name__, **_jsonable(dataclasses.asdict(task.body))},
        "seeds": seeds,
        "losses": [s.name for s in setups],
        "loss_setups": {s.name: {"family": s.family, "impl": s.impl, "options": _jsonable(s.options), "head_lr_scale": s.head_lr_scale, "head": s.head.style, "units": s.head.units, "batched_by": mode} for s, mode in zip(setups, trained["batching"])},
        "sizes": {name: len(getattr(task, name)) for name in ("train", "val", "test")},
        **_jsonable(options),
        "environment": environment(device),
    }
    predictions = {
        "models_loss": runs["loss"].to_numpy().astype(str),
        "models_seed": runs["seed"].to_numpy(),
        # the scores in the run's own dtype, so that every metric recomputed from them is the one reported
        "val_scores": splits["val"]["scores"].cpu().numpy(),
        "val_targets": task.val.y.numpy().astype(np.float32),
        "test_scores": test_scores.cpu().numpy(),
        "test_targets": task.test.y.numpy().astype(np.float32),
    }
    return Result(runs, history, thresholds_frame, calibration_frame, summary, config, predictions)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, range)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.tolist()
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def environment(device: torch.device) -> dict:
    """Package versions, the device and the git commit, for config.json."""
    from importlib.metadata import PackageNotFoundError, version

    import lossbench

    def installed(package: str) -> str | None:
        try:
            return version(package)
        except PackageNotFoundError:
            return None

    env = {
        "lossbench": lossbench.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scikit-learn": installed("scikit-learn"),
        "matplotlib": installed("matplotlib"),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
    }
    try:
        repo = Path(lossbench.__file__).resolve().parent.parent
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        env["git_commit"] = commit.stdout.strip() if commit.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        env["git_commit"] = None
    return env
