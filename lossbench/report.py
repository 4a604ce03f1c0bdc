"""The tables of a comparison, as text for a terminal and as JSON: one row per loss, paired differences, files written.

Every number comes from the Result: means and intervals from its ``summary`` frame (computed once, by
:mod:`lossbench.stats`), divergence counts from its ``runs`` frame. The functions here only choose,
arrange and word them.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from lossbench import thresholds as thr
from lossbench.results import Result

HEADLINE = ("test_accuracy", "test_accuracy_best", "best_threshold", "test_auc")
"""The summary metrics of the per-loss table, in column order (multi-label and grid runs add ``test_exact_match``)."""

DIFFERENCE_METRICS = ("test_accuracy", "test_accuracy_best", "test_auc")
"""The metrics whose paired differences to the baseline are reported (multi-label and grid runs add exact match)."""

LABELS = {
    "test_accuracy": "test acc @0.5",
    "test_accuracy_best": "test acc @best thr",
    "best_threshold": "best thr (val)",
    "test_auc": "test AUC",
    "test_exact_match": "exact match @0.5",
    "final_train_loss": "train loss",
    "diverged": "diverged",
}
"""Column headings of the text table."""


def _multi(result: Result) -> bool:
    return len(result.config.get("label_names", [])) > 1


def _metrics(result: Result, base: Sequence[str]) -> list[str]:
    extra = ["test_exact_match"] if _multi(result) and "test_exact_match" in set(result.summary["metric"]) else []
    return list(base) + extra


def loss_table(result: Result) -> pd.DataFrame:
    """One row per loss: mean and 95% CI of the headline test metrics, the final train loss, divergences.

    Columns: ``loss``, then ``<metric>``, ``<metric>_low``, ``<metric>_high`` for each metric of
    :data:`HEADLINE` (and ``test_exact_match`` for multi-label and grid tasks), ``final_train_loss`` (mean),
    ``diverged`` (how many seeds diverged) and ``seeds``.

    >>> import lossbench
    >>> result = lossbench.compare("titanic", seeds=2, epochs=1, device="cpu", config={"hidden": 8})  # a small, fast run
    >>> table = loss_table(result)
    >>> table[["loss", "diverged", "seeds"]]
             loss  diverged  seeds
    0  softmax_ce         0      2
    1         bce         0      2
    2         mse         0      2
    """
    summary = result.summary.set_index(["loss", "metric"])
    runs = result.runs
    rows = []
    for loss in result.losses:
        row: dict = {"loss": loss}
        for metric in _metrics(result, HEADLINE):
            mean, low, high = summary.loc[(loss, metric), ["mean", "ci_low", "ci_high"]]
            row.update({metric: mean, f"{metric}_low": low, f"{metric}_high": high})
        row["final_train_loss"] = summary.loc[(loss, "final_train_loss"), "mean"]
        mine = runs[runs["loss"] == loss]
        row["diverged"] = int(mine["diverged"].astype(bool).sum())
        row["seeds"] = len(mine)
        rows.append(row)
    return pd.DataFrame(rows)


def reading(low: float, high: float, loss: str) -> str:
    """The plain-words reading of a 95% interval of a paired difference (loss minus baseline).

    >>> reading(-0.02, 0.03, "mse")
    'interval includes 0: no clear difference'
    >>> reading(-0.08, -0.01, "mse")
    'interval excludes 0: mse is lower'
    >>> reading(0.004, 0.004, "mse")
    'the same difference on every seed: mse is higher on each'
    >>> reading(float("nan"), float("nan"), "mse")
    'no interval (fewer than 2 seeds with a value)'

    >>> reading(0.003816793893129637, 0.003816793893129655, "mse")  # 1/262 on every seed, up to rounding
    'the same difference on every seed: mse is higher on each'

    A zero-width interval (every seed differed by the same amount, as accuracies on a small split often
    do) is said as what it is: a t-interval of no spread is no evidence of its own, only a count of seeds.
    Zero width is up to rounding: ``205/262 - 204/262`` and ``210/262 - 209/262`` differ in their last bit.
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        return "no interval (fewer than 2 seeds with a value)"
    if math.isclose(low, high, rel_tol=1e-9, abs_tol=1e-15) and not math.isclose(low, 0, abs_tol=1e-12):
        return f"the same difference on every seed: {loss} is {'higher' if low > 0 else 'lower'} on each"
    if low > 0:
        return f"interval excludes 0: {loss} is higher"
    if high < 0:
        return f"interval excludes 0: {loss} is lower"
    return "interval includes 0: no clear difference"


def differences(result: Result) -> pd.DataFrame:
    """Paired differences to the baseline loss, seed by seed (loss minus baseline), with a plain-words reading.

    One row per (loss, metric) for every loss but the baseline: ``diff_mean``, ``diff_low``,
    ``diff_high`` (the 95% t-interval of the mean paired difference), ``n`` (paired seeds), ``reading``.

    >>> import lossbench
    >>> result = lossbench.compare("titanic", seeds=2, epochs=1, device="cpu", config={"hidden": 8})  # a small, fast run
    >>> d = differences(result)
    >>> d[["loss", "metric"]].head(3)
             loss              metric
    0  softmax_ce       test_accuracy
    1  softmax_ce  test_accuracy_best
    2  softmax_ce            test_auc
    """
    baseline = result.baseline
    summary = result.summary
    rows = []
    if baseline is None or "diff_mean" not in summary:
        return pd.DataFrame(columns=["loss", "metric", "baseline", "diff_mean", "diff_low", "diff_high", "n", "reading"])
    indexed = summary.set_index(["loss", "metric"])
    for loss in result.losses:
        if loss == baseline:
            continue
        for metric in _metrics(result, DIFFERENCE_METRICS):
            mean, low, high, n = indexed.loc[(loss, metric), ["diff_mean", "diff_low", "diff_high", "diff_n"]]
            rows.append(
                {"loss": loss, "metric": metric, "baseline": baseline, "diff_mean": mean, "diff_low": low, "diff_high": high,
                 "n": int(n), "reading": reading(low, high, loss)}
            )  # fmt: skip
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------


def _interval(mean: float, low: float, high: float, digits: int = 3, sign: bool = False) -> str:
    """``0.785 [0.763, 0.807]``, or the mean alone when there is no interval."""
    spec = f"{'+' if sign else ''}.{digits}f"
    if not math.isfinite(mean):
        return "n/a"
    if not (math.isfinite(low) and math.isfinite(high)):
        return format(mean, spec)
    return f"{format(mean, spec)} [{format(low, spec)}, {format(high, spec)}]"


def _loss_value(value: float) -> str:
    """A training loss for the table: three decimals, or three significant digits when it is huge (a loss blowing up).

    >>> _loss_value(0.33812), _loss_value(2.897e35), _loss_value(float("nan"))
    ('0.338', '2.9e+35', 'n/a')
    """
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.3f}" if abs(value) < 1e4 else f"{value:.3g}"


def _align(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def _count(n, one: str, many: str | None = None) -> str:
    """``n`` and the noun, singular for 1.

    >>> _count(1, "seed"), _count(3, "loss", "losses")
    ('1 seed', '3 losses')
    """
    return f"{n} {one if n == 1 else (many or one + 's')}"


def format_table(result: Result) -> str:
    """The per-loss table as aligned text, with a heading that says what the numbers are.

    >>> import lossbench
    >>> result = lossbench.compare("titanic", seeds=2, epochs=1, device="cpu", config={"hidden": 8})  # a small, fast run
    >>> text = format_table(result)
    >>> print(text.splitlines()[3])
      loss        test acc @0.5  ...  diverged
    """
    table = loss_table(result)
    cfg = result.config
    task_cfg = cfg.get("task_config", {})
    n_seeds = len(cfg.get("seeds", [])) or int(table["seeds"].max())
    sizes = cfg.get("sizes", {})
    spread = f"mean [95% CI] over {_count(n_seeds, 'seed')}" if n_seeds > 1 else "1 seed, so no interval"
    seeds = [int(seed) for seed in cfg.get("seeds", [])]
    which = f" ({', '.join(map(str, seeds))})" if seeds and seeds != list(range(len(seeds))) else ""  # seeds chosen by hand
    lines = [
        f"{cfg.get('task', '')}: {cfg.get('task_description', '')}",
        f"{_count(len(result.losses), 'loss', 'losses')} x {_count(n_seeds, 'seed')}{which}, {_count(task_cfg.get('epochs', '?'), 'epoch')}, "
        f"{task_cfg.get('optimizer', '?')} "
        f"(lr {task_cfg.get('lr', '?')}, batch {task_cfg.get('batch_size', '?')}), device {cfg.get('device', '?')}; "
        f"train/val/test {sizes.get('train', '?')}/{sizes.get('val', '?')}/{sizes.get('test', '?')}",
        f"Test split, {spread}; the best threshold is chosen on the validation split"
        + ("." if cfg.get("threshold_metric", "accuracy") == "accuracy" else f", by its {cfg['threshold_metric'].replace('_', ' ')}."),
    ]
    impls = result.runs.groupby("loss", sort=False)["impl"].first() if "impl" in result.runs else pd.Series(dtype=object)
    if (impls != "handwritten").any():  # a user's function or a naive form: the table's names alone would hide it
        lines.append("Implementations: " + ", ".join(f"{loss} {impl}" for loss, impl in impls.items()) + ".")
    metrics = _metrics(result, HEADLINE)
    header = ["loss"] + [LABELS[m] for m in metrics] + [LABELS["final_train_loss"], LABELS["diverged"]]
    rows = [header]
    for _, row in table.iterrows():
        cells = [row["loss"]]
        for m in metrics:
            cells.append(_interval(row[m], row[f"{m}_low"], row[f"{m}_high"], digits=2 if m == "best_threshold" else 3))
        cells += [_loss_value(row["final_train_loss"]), f"{row['diverged']}/{row['seeds']}"]
        rows.append(cells)
    lines += _align(rows)
    lines += table_notes(result)
    return "\n".join(lines)


def table_notes(result: Result) -> list[str]:
    """The notes printed under the table: what its numbers mean, and what to beware of in this run."""
    cfg = result.config
    notes: list[str] = []
    if _multi(result):
        k = len(cfg["label_names"])
        what = "areas" if cfg.get("task_kind") == "grid" else "labels"
        auc = (
            f"AUC pools the scores of all {k} {what} into one ranking (micro-averaged)."
            if thr.auc_average(cfg.get("task_kind", "")) == "micro"
            else f"AUC is the mean of the {k} {what}' own AUCs (macro-averaged; a label with no positive or no negative example in the split is left out)."
        )
        notes.append(
            f"Accuracy is Hamming accuracy: the share of all {k} {what} of all examples predicted right. "
            f"Exact match: the share of examples with all {k} {what} right. {auc}"
        )
    notes.append("Train loss: the mean of the last epoch's minibatch losses (none for a diverged model), on each loss's own scale, not comparable across losses.")
    silent = never_positive(result)
    if silent:
        notes.append(
            f"Never a positive answer at 0.5 on the test split, from any seed: {', '.join(silent)}. Such a model "
            "scores the all-negative baseline; usually it has not yet learned to say yes, and its numbers are then no "
            "verdict on the loss: train longer (--epochs) or faster (--lr)."
        )
    below = below_chance_auc(result)
    if below:
        notes.append(
            f"Test AUC under 0.5, its whole interval: {', '.join(below)}. Its models rank the positives below the "
            "negatives, a ranking that training made (chance gives 0.5): epochs that push every score down towards the "
            "positives' base rate can push some positives furthest. The validation AUC by epoch (history.csv, val_auc) "
            "shows whether more epochs undo it; positives pushed near 0 are confident mistakes, which MSE through the "
            "sigmoid, whose gradient vanishes there, corrects slowest."
        )
    undefined = result.runs["test_accuracy"].isna().groupby(result.runs["loss"], sort=False).agg(["sum", "size"])
    if undefined["sum"].any():
        counts = ", ".join(f"{loss} {int(r['sum'])} of {int(r['size'])}" for loss, r in undefined.iterrows() if r["sum"])
        notes.append(
            f"Models whose predictions are NaN (their weights blew up) have no test metrics and are left out of the means: {counts}."
        )
    return notes


def below_chance_auc(result: Result) -> list[str]:
    """The losses whose test AUC's 95% interval over seeds lies wholly under 0.5: their models rank the
    positives below the negatives, more than seed-to-seed chance explains."""
    summary = result.summary
    if summary.empty or "metric" not in summary:
        return []
    auc = summary[summary["metric"] == "test_auc"].set_index("loss")
    return [loss for loss in result.losses if loss in auc.index and auc.at[loss, "ci_high"] < 0.5]


def never_positive(result: Result) -> list[str]:
    """The losses none of whose models scores any test output at 0.5 or more (stuck answering "no").

    A model of a rare positive class sits there early in training; a loss whose every model does is not
    yet being compared, whatever its numbers say. A loss with a model whose scores are NaN (diverged)
    is not listed: its report says it diverged instead.
    """
    predictions = result.predictions
    if not predictions or "test_scores" not in predictions or "models_loss" not in predictions:
        return []
    scores, owner = np.asarray(predictions["test_scores"]), np.asarray(predictions["models_loss"])
    stuck = []
    for loss in result.losses:
        mine = scores[owner == loss]
        if len(mine) and np.isfinite(mine).all() and (mine < 0.5).all():
            stuck.append(loss)
    return stuck


def format_differences(result: Result) -> str:
    """The paired differences to the baseline as aligned text, each with its plain-words reading.

    >>> import lossbench
    >>> result = lossbench.compare("titanic", seeds=2, epochs=1, device="cpu", config={"hidden": 8})  # a small, fast run
    >>> text = format_differences(result)
    >>> print(text.splitlines()[0])
    Paired differences to bce (loss minus bce on the same seeds, mean [95% CI]):
    """
    d = differences(result)
    if d.empty:
        return f"Paired differences: none (only the baseline {result.baseline} was trained)."
    spread = "mean [95% CI]" if (d["n"] >= 2).any() else "mean; one seed gives no interval"
    lines = [f"Paired differences to {result.baseline} (loss minus {result.baseline} on the same seeds, {spread}):"]
    seeds = result.runs.groupby("loss")["seed"].nunique()

    def paired(r: pd.Series) -> str:  # a seed where either model has no value (NaN predictions) pairs with nothing
        total = int(seeds[r["loss"]])
        return f"; from {r['n']} of {total} seeds, where both have a value" if r["n"] < total else ""

    rows = [
        [r["loss"], LABELS[r["metric"]], _interval(r["diff_mean"], r["diff_low"], r["diff_high"], sign=True), r["reading"] + paired(r)]
        for _, r in d.iterrows()
    ]
    lines += _align(rows)
    return "\n".join(lines)


def format_files(directory: Path | None, files: Sequence[Path]) -> str:
    """The run directory and the files in it, plots last, a line each.

    >>> print(format_files(Path("runs/x"), [Path("runs/x/config.json"), Path("runs/x/plots/calibration.png")]))
    Wrote runs/x:
      runs/x/config.json
      runs/x/plots/calibration.png
    """
    if directory is None:
        return "Nothing was written (no run directory)."
    return "\n".join([f"Wrote {directory}:"] + [f"  {f}" for f in files])


def format_report(result: Result, files: Sequence[Path] = (), verb: str = "Wrote") -> str:
    """The whole report of a run: the per-loss table, the paired differences, then the files.

    >>> import lossbench
    >>> result = lossbench.compare("titanic", seeds=2, epochs=1, device="cpu", config={"hidden": 8})  # a small, fast run
    >>> print(format_report(result))
    titanic: Titanic: survived or not, ...
    Paired differences to bce (loss minus bce on the same seeds, mean [95% CI]):
    ...
    """
    parts = [format_table(result), format_differences(result)]
    if result.directory is not None:
        parts.append(format_files(result.directory, files).replace("Wrote", verb, 1))
    return "\n\n".join(parts)


# ---------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts of plain Python values, NaN as None (JSON has no NaN)."""
    out = []
    for row in frame.to_dict("records"):
        out.append({k: _plain(v) for k, v in row.items()})
    return out


def _plain(value):
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def as_json(result: Result, files: Sequence[Path] = ()) -> str:
    """The run as one JSON document: task, losses, the per-loss table, the differences, the summary, the files.

    NaN (an interval from one seed) becomes ``null``, so the text is strict JSON.

    >>> import json, lossbench
    >>> result = lossbench.compare("titanic", seeds=2, epochs=1, device="cpu", config={"hidden": 8})  # a small, fast run
    >>> doc = json.loads(as_json(result))
    >>> sorted(doc)  # doctest: +NORMALIZE_WHITESPACE
    ['baseline', 'description', 'device', 'differences', 'epochs', 'files', 'implementations', 'kind', 'losses', 'notes',
     'plots', 'run_dir', 'seeds', 'sizes', 'summary', 'table', 'task', 'threshold_metric', 'training']
    """
    cfg = result.config
    task_cfg = cfg.get("task_config", {})
    impls = result.runs.groupby("loss", sort=False)["impl"].first().to_dict() if "impl" in result.runs else {}
    files = [str(f) for f in files]
    doc = {
        "task": cfg.get("task"),
        "kind": cfg.get("task_kind"),
        "description": cfg.get("task_description"),
        "losses": result.losses,
        "baseline": result.baseline,
        "seeds": cfg.get("seeds"),
        "epochs": task_cfg.get("epochs"),
        "training": {key: task_cfg.get(key) for key in ("optimizer", "lr", "batch_size")},
        "device": cfg.get("device"),
        "sizes": cfg.get("sizes"),
        "threshold_metric": cfg.get("threshold_metric", "accuracy"),  # what the best validation threshold maximises
        "implementations": impls,
        "run_dir": str(result.directory) if result.directory is not None else None,
        "files": [f for f in files if not Path(f).suffix == ".png"],
        "plots": [f for f in files if Path(f).suffix == ".png"],
        "table": _records(loss_table(result)),
        "differences": _records(differences(result)),
        "summary": _records(result.summary),
        "notes": table_notes(result),  # the lines under the text table
    }
    return json.dumps(doc, indent=2, allow_nan=False)
