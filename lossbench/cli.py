"""The `lossbench` command line: compare losses on a task, list what exists, reprint and redraw runs."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import functools
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import types
import typing
import warnings
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """A user's mistake on the command line: printed as one line, exit code 2."""

    def __init__(self, message: str, prog: str | None = None) -> None:
        super().__init__(message)
        self.prog = prog  # the (sub)command whose options were wrong, when argparse found the mistake


class _StoreOnce(argparse._StoreAction):
    """argparse's "store", except that an option given twice is a mistake: the second would silently replace
    the first (`--losses bce --losses mse` trained mse alone)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        given = namespace.__dict__.setdefault("_given_once", {})
        if self.dest in given:
            parser.error(f"Expected {option_string} once, but got it twice ({given[self.dest]!r}, then {values!r}); "
                         "the second would silently replace the first")
        given[self.dest] = values
        super().__call__(parser, namespace, values, option_string)


class _Parser(argparse.ArgumentParser):
    """argparse, except that a mistake is one line (no usage block) and never exits the caller's process, that
    every negative number is taken as an option's value, that an option is given once, and in full (`--epoch`
    is not taken for `--epochs`)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.register("action", None, _StoreOnce)
        self.register("action", "store", _StoreOnce)
        # argparse reads only -2 and -0.5 as numbers, so `--lr -1e-3` or `--lr -inf` said "expected one
        # argument"; with these read as numbers too, the option's own check says what is wrong with them.
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$|^-(inf|infinity|nan)$",
                                                   re.IGNORECASE)

    def error(self, message: str) -> typing.NoReturn:
        # "argument --seeds: Expected --seeds to be ..." -> the option's own message, which names it already
        message = re.sub(r"^argument [^:]+: (?=Expected )", "", message)
        end = "." if message.endswith(".") else ""  # "... but got '0' (see `lossbench compare --help`)."
        raise UsageError(f"{message.removesuffix('.')} (see `{self.prog} --help`){end}", prog=self.prog)


_FORMATTER = argparse.RawDescriptionHelpFormatter


# ---------------------------------------------------------------------------------------------
# Parsing the options of `lossbench compare`
# ---------------------------------------------------------------------------------------------


MAX_THREADS = 8 * (os.cpu_count() or 1)
"""The most CPU threads --threads accepts: more than the cores only make the threads wait on each other."""


def _positive(kind: type, what: str, at_most: float = float("inf")) -> Callable[[str], float]:
    """An argparse type: ``kind(text)`` if it is a finite number above 0 (and at most ``at_most``), else a
    one-line error naming ``what``."""
    expected = "a positive whole number" if kind is int else "a positive number"
    if at_most < float("inf"):
        expected += f" of at most {at_most:g}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not (0 < value < float("inf")) or value > at_most:
            raise argparse.ArgumentTypeError(f"Expected {what} to be {expected}, but got {text!r}.")
        return value

    return parse


def _unbracketed(text: str) -> str:
    """A list's text without the brackets Python or JSON would write around it: ``[3, 7]`` -> ``3, 7``.

    >>> _unbracketed(" [3, 7] "), _unbracketed("3,7"), _unbracketed("[3")
    ('3, 7', '3,7', '[3')
    """
    inner = text.strip()
    return inner[1:-1] if inner.startswith("[") and inner.endswith("]") else inner


def _seeds(text: str) -> int | tuple[int, ...]:
    """An argparse type for ``--seeds``: a count N (seeds 0..N-1), or the seeds themselves, comma-separated.

    >>> _seeds("5"), _seeds("3,7"), _seeds("[3, 7]")
    (5, (3, 7), (3, 7))
    """
    inner = _unbracketed(text)
    if "," not in inner:
        return _positive(int, "--seeds")(inner)
    try:
        seeds = tuple(int(part) for part in inner.split(","))
    except ValueError:
        seeds = ()
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"Expected --seeds to be a count, as in 5 (seeds 0..4), or distinct seeds 0 or more "
                                         f"separated by commas, as in 3,7, but got {text!r}.")
    return seeds


def _named(what: str) -> Callable[[str], str]:
    """An argparse type for a path: any text but an empty one, which Python would take for the current folder."""

    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"Expected {what} to be a path, but got {text!r}.")
        return text

    return parse


def parse_losses(text: str) -> list[str]:
    """``"softmax_ce,bce,mse"`` -> the loss names, each a family or a labelled variant ``family@label``.

    >>> parse_losses("bce, bce@weighted")
    ['bce', 'bce@weighted']
    >>> parse_losses("bce,bce@")
    Traceback (most recent call last):
    ...
    lossbench.cli.UsageError: Expected a label after @ made of letters, digits or _, as in bce@weighted, but got 'bce@'.
    >>> parse_losses("bce,hinge")
    Traceback (most recent call last):
    ...
    lossbench.cli.UsageError: Expected --losses to name loss families among softmax_ce, bce, mse, focal (or labelled variants such as bce@weighted), but got 'hinge'; `lossbench losses` lists them.
    """
    from lossbench import losses as registry

    names = [part.strip() for part in text.split(",") if part.strip()]
    valid = [f.name for f in registry.families()]
    if not names:
        raise UsageError(f"Expected --losses to name at least one loss among {', '.join(valid)}, but got {text!r}.")
    for name in names:
        family, at, label = name.partition("@")
        if at and not re.fullmatch(r"[A-Za-z0-9_]+", label):
            raise UsageError(f"Expected a label after @ made of letters, digits or _, as in bce@weighted, but got {name!r}.")
        if family not in valid:
            raise UsageError(
                f"Expected --losses to name loss families among {', '.join(valid)} (or labelled variants such as "
                f"bce@weighted), but got {name!r}; `lossbench losses` lists them."
            )
    if len(set(names)) != len(names):
        raise UsageError(f"Expected --losses to name each loss once, but got {text!r}; label a second variant, as in bce,bce@weighted.")
    return names


def parse_impl(text: str, losses: Sequence[str]) -> str | dict[str, str]:
    """``--impl``: one implementation for every loss, or comma-separated ``loss=impl`` pairs.

    An implementation is ``handwritten``, ``naive``, ``reference`` or an import path
    ``package.module:function`` (whose colon is no separator here).

    >>> parse_impl("naive", ["bce", "mse"])
    'naive'
    >>> parse_impl("bce=lossbench.losses.bce:binary_cross_entropy_naive,mse=reference", ["bce", "mse"])
    {'bce': 'lossbench.losses.bce:binary_cross_entropy_naive', 'mse': 'reference'}
    >>> parse_impl("bce=naive,bce=reference", ["bce"])
    Traceback (most recent call last):
    ...
    lossbench.cli.UsageError: Expected --impl to give 'bce' one implementation, but got 'naive' and 'reference'.
    """
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not any("=" in part for part in parts):
        if len(parts) != 1:
            raise UsageError(
                f"Expected --impl to be one implementation for all losses or comma-separated loss=impl pairs, but got {text!r}."
            )
        return _check_impl(parts[0])
    mapping: dict[str, str] = {}
    for part in parts:
        name, sep, impl = (s.strip() for s in part.partition("="))
        if not sep or not impl:
            raise UsageError(f"Expected --impl pairs of the form loss=impl, as in bce=naive, but got {part!r}.")
        if name not in losses:
            raise UsageError(f"Expected --impl to name one of the losses {', '.join(losses)}, but got {name!r} in {part!r}.")
        if name in mapping:
            raise UsageError(f"Expected --impl to give {name!r} one implementation, but got {mapping[name]!r} and {impl!r}.")
        mapping[name] = _check_impl(impl)
    return mapping


def _check_impl(impl: str) -> str:
    """A built-in implementation name, or an import path whose function can be imported (checked now, before training)."""
    from lossbench.losses import LossNameError, families, load_user_function
    from lossbench.runner import BUILT_IN_IMPLS

    if impl.split(":", 1)[0] in {f.name for f in families()}:
        return impl  # a built-in loss's name ('softmax_ce:reference'): compare() says what to write instead
    if ":" in impl:
        try:
            load_user_function(impl)
        except LossNameError as err:  # said for --impl: what is wrong with the path, not every loss name there is
            raise UsageError(f"Expected --impl {impl!r} to import a loss function as package.module:function, but {err.detail}.") from err
    elif impl not in BUILT_IN_IMPLS:
        raise UsageError(
            f"Expected --impl to be one of {', '.join(BUILT_IN_IMPLS)} or an import path package.module:function, but got {impl!r}."
        )
    return impl


def _parse_typed(text: str, hint, what: str):
    """Parse ``text`` to the type ``hint`` of a config field (int, float, bool, str, Literal, tuple, optional)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        for choice in args:
            if text == str(choice):
                return choice
        raise UsageError(f"Expected {what} to be one of {', '.join(map(str, args))}, but got {text!r}.")
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.lower() in ("none", "null"):
            return None
        errors = []
        options = [a for a in args if a is not type(None)]
        for option in options:
            try:
                return _parse_typed(text, option, what)
            except UsageError as err:
                errors.append(str(err))
        if "," in text:  # 1,x meant a list: the list's own complaint names the part that is wrong
            listed = [err for option, err in zip(options, errors) if typing.get_origin(option) in (tuple, list)]
            errors = listed or errors
        raise UsageError(errors[0] if errors else f"Expected {what} to be none, but got {text!r}.")
    if origin in (tuple, list):
        item = args[0] if args else str
        inner = _unbracketed(text)  # channels=[16,32] as well as channels=16,32
        parts = [part.strip() for part in inner.split(",")] if inner.strip() else []
        if "" in parts:  # 16,,32 is a typo, not (16, 32)
            raise UsageError(f"Expected {what} to be a comma-separated list with a value between every two commas, but got {text!r}.")
        values = [_parse_typed(part, item, what) for part in parts]
        return tuple(values) if origin is tuple else values
    if hint is bool:
        lowered = text.lower()
        if lowered in ("true", "yes", "1", "on"):
            return True
        if lowered in ("false", "no", "0", "off"):
            return False
        raise UsageError(f"Expected {what} to be true or false, but got {text!r}.")
    if hint in (int, float):
        try:
            return hint(text)
        except ValueError:
            kind = "a whole number" if hint is int else "a number"
            raise UsageError(f"Expected {what} to be {kind}, but got {text!r}.") from None
    if hint is str:
        return text
    raise UsageError(f"Expected {what} to be a setting the command line can parse, but its type is {hint!r}.")


def parse_settings(pairs: Sequence[str], config_class: type) -> dict:
    """``--set KEY=VALUE`` pairs -> config overrides, each parsed to its field's type; unknown keys are an error.

    >>> from lossbench.tasks import titanic
    >>> parse_settings(["hidden=32", "val_fraction=0.25", "optimizer=sgd"], titanic.Config)
    {'hidden': 32, 'val_fraction': 0.25, 'optimizer': 'sgd'}
    >>> parse_settings(["hiden=32"], titanic.Config)
    Traceback (most recent call last):
    ...
    lossbench.cli.UsageError: Expected --set to name a setting of the task, one of seeds, epochs, ..., but got 'hiden'.
    """
    hints = typing.get_type_hints(config_class)
    fields = [f.name for f in dataclasses.fields(config_class)]
    out: dict = {}
    for pair in pairs:
        key, sep, value = (s.strip() for s in pair.partition("="))
        if not sep:
            raise UsageError(f"Expected --set KEY=VALUE, as in --set epochs=20, but got {pair!r}.")
        if key not in fields:
            raise UsageError(f"Expected --set to name a setting of the task, one of {', '.join(fields)}, but got {key!r}.")
        if key in out:
            raise UsageError(f"Expected each setting once, but got --set {key}= twice.")
        out[key] = _parse_typed(value, hints[key], f"--set {key}")
    return out


OPTIONS_OF_SETTINGS = {"seeds": "--seeds", "epochs": "--epochs", "lr": "--lr", "batch_size": "--batch-size", "optimizer": "--optimizer",
                       "target": "--target"}  # fmt: skip
"""The settings that have an option of their own, which the same setting given by ``--set`` would contradict."""


def _option_value(text: str):
    """A per-loss option's value: a number, a comma-separated list of numbers (brackets allowed), true/false,
    none, or text.

    >>> _option_value("1,3"), _option_value("[1, 3]"), _option_value("[2]"), _option_value("0.5")
    ([1.0, 3.0], [1.0, 3.0], [2.0], 0.5)
    """
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        inner = _unbracketed(text)
        if inner != text.strip() or "," in inner:  # weight=[1,3], weight=1,3 and weight=[2] are lists
            return [float(part) for part in inner.split(",")]
        return float(text)
    except ValueError:
        return text


def parse_loss_options(pairs: Sequence[str], losses: Sequence[str]) -> dict[str, dict]:
    """``--loss-option LOSS.KEY=VALUE`` pairs -> per-loss overrides for :func:`lossbench.compare`.

    >>> parse_loss_options(["bce@weighted.pos_weight=4", "softmax_ce.head_lr_scale=0.5"], ["softmax_ce", "bce@weighted"])
    {'bce@weighted': {'pos_weight': 4.0}, 'softmax_ce': {'head_lr_scale': 0.5}}
    """
    out: dict[str, dict] = {}
    for pair in pairs:
        left, sep, value = (s.strip() for s in pair.partition("="))
        name, dot, key = left.rpartition(".")
        if not sep or not dot or not name or not key:
            raise UsageError(f"Expected --loss-option LOSS.KEY=VALUE, as in bce.pos_weight=4, but got {pair!r}.")
        if name not in losses:
            raise UsageError(f"Expected --loss-option to name one of the losses {', '.join(losses)}, but got {name!r} in {pair!r}.")
        if key in out.get(name, {}):
            raise UsageError(f"Expected each loss option once, but got --loss-option {name}.{key}= twice.")
        out.setdefault(name, {})[key] = _option_value(value)
    return out


def default_run_dir(task: str, root: Path = Path("runs")) -> Path:
    """A new folder ``runs/<task>-<YYYYmmdd-HHMMSS>`` (with ``-2``, ``-3``, ... if that one exists); nothing is created.

    >>> path = default_run_dir("titanic")
    >>> path.parent.name, path.name.startswith("titanic-"), path.exists()
    ('runs', True, False)
    """
    stem = root / f"{task}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = stem, 1
    while path.exists():
        n += 1
        path = stem.with_name(f"{stem.name}-{n}")
    return path


def _check_new_dir(path: Path, chosen: bool = True) -> None:
    """Fail now, not after training, if the run directory ``path`` (given by --out, or else the default) could not be written."""
    if path.is_symlink():  # the run is renamed into place, and a rename does not go through a link (or a dangling one)
        raise UsageError(f"Expected --out to be a new or empty directory, but {str(path)!r} is a symbolic link; name the "
                         "folder it points to, or a new one.")
    if path.exists() and Path.cwd().resolve().is_relative_to(path.resolve()):  # --out . or --out ..
        # the run is written next to its folder and renamed into place, which the working folder cannot be
        raise UsageError(f"Expected --out to be a new folder for the run, but {str(path)!r} is the current folder or "
                         "holds it; name a folder inside it, e.g. --out runs/my-run.")
    if path.exists() and not path.is_dir():
        raise UsageError(f"Expected --out to be a new or empty directory, but {str(path)!r} is a file.")
    if path.exists() and any(path.iterdir()):
        raise UsageError(f"Expected --out to be a new or empty directory, but {str(path)!r} already holds files; a saved run is never overwritten.")
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        where = "--out to be a directory that can be created" if chosen else f"{str(path.parent)!r}, where a run goes without --out, to be a folder"
        raise UsageError(f"Expected {where}, but {str(ancestor)!r} is a file.")
    try:  # the run is written as a hidden folder next to its final place, then renamed
        probe = tempfile.mkdtemp(prefix=".lossbench-write-check-", dir=ancestor)
    except OSError as err:
        where = "--out to be somewhere" if chosen else f"{str(path.parent)!r}, where a run goes without --out, to be somewhere"
        raise UsageError(f"Expected {where} this user can write, but {str(ancestor)!r} refuses it ({err.strerror}).") from None
    os.rmdir(probe)


@contextlib.contextmanager
def _named_as_typed(names: Mapping[str, str]):
    """Word a ValueError of the library with the command line's names for its arguments (`timeout` -> --timeout)."""
    try:
        yield
    except ValueError as err:
        message = str(err)
        for argument, option in names.items():
            message = message.replace(f"`{argument}`", option)
        raise UsageError(message) from None


COMPARE_OPTIONS = {
    "device": "--device", "lr": "--lr", "seeds": "--seeds", "epochs": "--epochs", "batch_size": "--batch-size",
    "optimizer": "--optimizer", "head_init": "--head-init", "baseline": "--baseline", "threads": "--threads",
    "threshold_metric": "--threshold-metric", "data": "--data",
}  # fmt: skip
"""The arguments of :func:`lossbench.compare` that `lossbench compare` takes as options, by their names there."""


class _Interrupts:
    """Ctrl-C during a comparison: it stops training, or the plots, at once; in between, while the trained
    models' results are put together and written, it waits until they are saved (and skips the plots).

    Used as a context manager around training and saving, from the main thread; ``waiting`` says which
    of the two Ctrl-C does now, ``pending`` whether it was pressed while waiting.
    """

    def __init__(self) -> None:
        self.waiting = False
        self.pending = False

    def __enter__(self) -> "_Interrupts":
        # only the main thread may set a signal handler (elsewhere Ctrl-C does not reach this command anyway),
        # and a process that ignores Ctrl-C (started with nohup, or in the background) goes on ignoring it
        main = threading.current_thread() is threading.main_thread()
        ignored = main and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        self.previous = signal.signal(signal.SIGINT, self._handle) if main and not ignored else None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def _handle(self, signum: int, frame: object) -> None:
        if not self.waiting:
            raise KeyboardInterrupt
        if not self.pending:
            print("\ninterrupted: saving the trained results first, without plots", file=sys.stderr)
        self.pending = True


def _show_bars() -> bool:
    """Progress bars go to a terminal only: written to a file or a CI log, each update would be a line of its own."""
    return sys.stderr.isatty()


class _TrainingBar:
    """The runner's progress bar, which also tells ``interrupts`` when the last epoch is done."""

    def __init__(self, interrupts: _Interrupts) -> None:
        self.interrupts = interrupts
        self.bar = None

    def __call__(self, report) -> None:
        from lossbench.runner import ProgressBar

        if self.bar is None and _show_bars():
            self.bar = ProgressBar(report.epochs)
        if self.bar is not None:
            self.bar(report)
        if report.epoch == report.epochs:  # trained: from here on, Ctrl-C waits for the results to be saved
            self.close()
            self.interrupts.waiting = True

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _save_run(
    result, out: Path, task: str, draw: Callable[[Path], None] | None, interrupts: _Interrupts | None = None
) -> tuple[Path, list[str], bool]:
    """Save the trained run to ``out`` whatever goes wrong after training; returns where, what went wrong,
    and whether Ctrl-C stopped the plots.

    If the plots cannot be drawn, or Ctrl-C stops them (or came after training, while ``interrupts``
    waited), the run is saved without them; if ``out`` cannot be written after all (or another run took it
    meanwhile), the run goes to a new folder under ``runs/`` here, or else under the system's temporary folder.
    """
    problems: list[str] = []
    failed_plots: list[BaseException] = []
    stopped: list[KeyboardInterrupt] = []  # Ctrl-C during the plots: no more drawing, at any folder

    def plots(tmp: Path) -> None:
        if interrupts is not None and interrupts.pending and not stopped:
            stopped.append(KeyboardInterrupt())
        if stopped:
            failed_plots.append(stopped[0])
            return
        try:
            if interrupts is not None:
                interrupts.waiting = False  # Ctrl-C stops the drawing at once
            draw(tmp)
        except (Exception, KeyboardInterrupt) as err:  # noqa: BLE001 - neither may lose the trained results
            failed_plots.append(err)
            if isinstance(err, KeyboardInterrupt):
                stopped.append(err)
            shutil.rmtree(tmp / "plots", ignore_errors=True)
        finally:
            if interrupts is not None:
                interrupts.waiting = True  # and waits again while the folder is put in place

    from lossbench.results import RunExistsError

    failed_places: list[str] = []  # "could not write 'runs/x' (why)", said in the one line that says where the run went
    for place in (out, default_run_dir(task), None):
        target = Path(tempfile.mkdtemp(prefix=f"lossbench-{task}-")) if place is None else place
        failed_plots.clear()  # a failed save is tried again, plots and all
        try:
            result.save(target, extra=None if draw is None else plots)
        except RunExistsError:  # another run took the folder while this one trained
            failed_places.append(f"could not write {str(target)!r} (another run wrote files there meanwhile)")
            continue
        except OSError as err:
            failed_places.append(f"could not write {str(target)!r} ({type(err).__name__}: {err})")
            continue
        while_drawing = bool(failed_plots) and isinstance(failed_plots[0], KeyboardInterrupt) and not (interrupts and interrupts.pending)
        interrupted = while_drawing or bool(interrupts and interrupts.pending)
        if while_drawing:
            problems.append(f"interrupted while drawing the plots: the results are saved without them, and `lossbench plot {target}` draws them")
        elif interrupted:
            problems.append("interrupted after training: the results are saved" + (
                "" if draw is None else f" without plots, and `lossbench plot {target}` draws them"))
        elif failed_plots:
            problems.append(
                f"the plots could not be drawn ({type(failed_plots[0]).__name__}: {failed_plots[0]}); the results are "
                f"saved without them, and `lossbench plot {target}` draws them"
            )
        if target != out:
            problems.insert(0, f"{'; '.join(failed_places)}; the run was saved to {str(target)!r} instead")
        return target, problems, interrupted
    raise UsageError("; ".join(failed_places))  # not reached: the temporary folder is always writable


def _run_files(directory: Path) -> list[Path]:
    """The files of a run directory, plots last."""
    files = sorted(p for p in directory.iterdir() if p.is_file())
    plots_dir = directory / "plots"
    plots = sorted(plots_dir.glob("*.png")) if plots_dir.is_dir() else []
    return files + plots


# ---------------------------------------------------------------------------------------------
# The commands
# ---------------------------------------------------------------------------------------------


def _cmd_compare(args: argparse.Namespace) -> int:
    from lossbench import tasks

    # 1. everything that can be checked without data or training, so a typo costs no time
    try:
        module = tasks.get(args.task)
    except ValueError as err:
        raise UsageError(str(err).replace("`task`", "--task")) from None
    losses = parse_losses(args.losses)
    impl = parse_impl(args.impl, losses)
    config = parse_settings(args.set, module.Config)
    for key, option in OPTIONS_OF_SETTINGS.items():
        if key in config and getattr(args, key) is not None:
            raise UsageError(f"Expected {option} or --set {key}=, not both, but got {option} {getattr(args, key)} and --set {key}={config[key]}.")
    try:  # a setting of the generated data with --data, or the reverse, would be silently ignored
        tasks.check_settings_apply(module, config, args.data, spell="--set {}".format, data_name="--data")
    except ValueError as err:
        raise UsageError(str(err)) from None
    if args.target is not None:
        if "target" not in {f.name for f in dataclasses.fields(module.Config)}:
            having = [name for name in tasks.names() if _has_target(name)]
            raise UsageError(
                f"Expected --target only with a task that has one ({', '.join(having) or 'mammography'}), but got --task {args.task}."
            )
        config["target"] = args.target
    overrides = parse_loss_options(args.loss_option, losses)
    if args.baseline is not None and args.baseline not in losses:
        raise UsageError(f"Expected --baseline to be one of the losses {', '.join(losses)}, but got {args.baseline!r}.")
    from lossbench.runner import resolve_device

    with _named_as_typed(COMPARE_OPTIONS):
        resolve_device(args.device)  # --device cuda on a machine without CUDA fails here, before any work
    out = Path(args.out) if args.out is not None else default_run_dir(args.task)
    _check_new_dir(out, chosen=args.out is not None)

    # 2. train
    import lossbench

    with _Interrupts() as interrupts:
        bar = _TrainingBar(interrupts)
        try:
            # "Expected `device` ..." -> "Expected --device ...", and a setting given as --set KEY=VALUE by that name
            with _named_as_typed({**COMPARE_OPTIONS, **{key: f"--set {key}" for key in config or {}}}):
                result = lossbench.compare(
                    args.task, losses, impl,
                    seeds=args.seeds, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                    head_init=args.head_init, overrides=overrides or None, baseline=args.baseline, data=args.data, config=config,
                    quick=args.quick, device=args.device, progress=bar, threads=args.threads, threshold_metric=args.threshold_metric,
                )  # fmt: skip
        finally:
            bar.close()

        # 3. save, with the plots drawn into the temporary directory so they land together with the rest;
        #    whatever fails now, the trained results are kept
        def draw(tmp: Path) -> None:
            from lossbench import plots

            plots.save_plots(result, tmp / "plots", progress=_show_bars(), workers=plots.plot_workers())

        saved, problems, interrupted = _save_run(result, out, args.task, None if args.no_plots else draw, interrupts)
    _print_report(result, _run_files(saved), args.json)
    for problem in problems:
        print(f"lossbench compare: {'' if interrupted else 'error: '}{problem}", file=sys.stderr)
    return EXIT_INTERRUPTED if interrupted else EXIT_USAGE if problems else EXIT_OK


def _has_target(task: str) -> bool:
    from lossbench import tasks

    try:
        return "target" in {f.name for f in dataclasses.fields(tasks.get(task).Config)}
    except ImportError:
        return False


def _print_report(result, files: list[Path], as_json: bool, verb: str = "Wrote") -> None:
    from lossbench import report

    if as_json:
        print(report.as_json(result, files))
    else:
        print(report.format_report(result, files, verb=verb))


def _cmd_show(args: argparse.Namespace) -> int:
    import lossbench

    result = lossbench.load(args.run_dir)
    with _damaged_run(result.directory):
        _print_report(result, _run_files(result.directory), args.json, verb="Files in")
    return EXIT_OK


@contextlib.contextmanager
def _damaged_run(run_dir: str | os.PathLike) -> Iterator[None]:
    """A KeyError while reporting or drawing a loaded run: its config.json names what its tables lack (an
    edited task kind or label), which `load` cannot foresee; one line naming the run, not "unexpected"."""
    from lossbench.results import DAMAGED

    try:
        yield
    except KeyError as err:
        raise UsageError(f"Expected {str(run_dir)!r} to hold what its config.json describes, but its tables lack "
                         f"{err} ({DAMAGED}).") from None


def _cmd_plot(args: argparse.Namespace) -> int:
    import lossbench
    from lossbench import plots

    result = lossbench.load(args.run_dir)
    run_dir = Path(result.directory)
    target = run_dir / "plots"
    if target.exists() and not target.is_dir():
        raise UsageError(f"Expected RUN_DIR/plots to be the folder of the run's plots, but {str(target)!r} is a file; "
                         "move it away and draw again.")
    # draw into a hidden folder first, then move each figure over its old file: an interruption while
    # drawing leaves the old plots as they were, and files of the user's own in plots/ stay where they are
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".plots.partial-", dir=run_dir))
    except OSError as err:
        raise UsageError(f"Expected RUN_DIR to be a folder this user can write, to draw its plots in, but {str(run_dir)!r} "
                         f"refuses it ({err.strerror}).") from None
    made = not target.exists()
    try:  # a plots/ folder that refuses its figures is found before they take seconds to draw
        target.mkdir(exist_ok=True)  # with the user's usual permissions, as `compare` makes it
        handle, probe = tempfile.mkstemp(prefix=".plots.probe-", dir=target)
        os.close(handle)
        os.unlink(probe)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if made:
            shutil.rmtree(target, ignore_errors=True)
        raise UsageError(f"Expected RUN_DIR/plots to be a folder this user can write, but {str(target)!r} refuses it "
                         f"({err.strerror}); nothing was drawn.") from None
    try:
        with _named_as_typed({"epoch": "--epoch"}), _damaged_run(run_dir):
            drawn = plots.save_plots(result, tmp, epoch=args.epoch, progress=_show_bars(), workers=plots.plot_workers())
        paths = [target / path.name for path in drawn]
        for path, new in zip(paths, drawn):
            os.replace(new, path)
    except BaseException:
        if made:  # the folder made for figures that were not drawn goes again
            shutil.rmtree(target, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for path in sorted(paths):  # by name, as `compare` and `show` list them
        print(path)
    return EXIT_OK


def _cmd_tasks(args: argparse.Namespace) -> int:
    from lossbench import tasks

    names = tasks.names()
    width = max(len(n) for n in names)
    for name in names:
        try:
            module = tasks.get(name)
        except ImportError as err:
            print(f"{name.ljust(width)}  (not available in this installation: {err})")
            continue
        print(f"{name.ljust(width)}  {module.SUMMARY}")
        print(" " * (width + 2) + task_defaults(module.Config(), module.QUICK))
    return EXIT_OK


def task_defaults(config, quick: Mapping) -> str:
    """A task's training defaults, and what ``--quick`` changes, as ``--set`` would name them.

    >>> from lossbench.tasks import titanic
    >>> task_defaults(titanic.Config(), titanic.QUICK)
    'defaults: seeds=10 epochs=100 batch_size=64 lr=0.001 optimizer=adam; --quick: seeds=3 epochs=10'
    """
    keys = ("seeds", "epochs", "batch_size", "lr", "optimizer")
    return (f"defaults: {' '.join(f'{k}={getattr(config, k)}' for k in keys)}; "
            f"--quick: {' '.join(f'{k}={v}' for k, v in quick.items())}")


def _cmd_losses(args: argparse.Namespace) -> int:
    from lossbench import losses

    for line in losses.describe():
        print(line)
    print("\nPick an implementation with --impl naive (every loss) or --impl bce=naive (one loss), and set an option "
          "with --loss-option bce.pos_weight=4; every loss also takes head_lr_scale, a factor on its head's learning rate "
          "(and so on the head's weight-decay steps). mse's `on` is 'probability' in a comparison, whose scores are "
          "sigmoid(z); on='raw' (a regression on z) is for calling the loss yourself.")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# The parser
# ---------------------------------------------------------------------------------------------

COMPARE_HELP = """\
Train identical models (same initial body, same minibatches, same optimizer) with each loss over several
seeds, then compare them on the test split with 95% confidence intervals over seeds.

examples:
  lossbench compare --task titanic
  lossbench compare --task titanic --quick --losses softmax_ce,bce,mse --seeds 5
  lossbench compare --task multilabel --impl naive --epochs 5
  lossbench compare --task mammography --target grid --set patch_size=64
  lossbench compare --task titanic --losses bce,bce@weighted --loss-option bce@weighted.pos_weight=4
  lossbench compare --task titanic --impl bce=mysolution:binary_cross_entropy

prints:
  a progress bar while training (on stderr, when it is a terminal); then a table with one row per loss:
  test accuracy at the threshold 0.5 and at the best-validation threshold (and that threshold) and AUC
  (multilabel and the grid: Hamming accuracy, and exact match beside it), each as mean [95% CI] over
  seeds, then the mean final training loss and how many seeds diverged, with notes under it; then the
  paired differences to the baseline loss with a plain reading ("interval excludes 0" or not); then the
  files written. --json prints all of it as one JSON document instead, and nothing else on stdout.

writes (never overwriting a run):
  RUN_DIR/config.json, runs.csv, history.csv, thresholds.csv, calibration.csv, summary.csv,
  predictions.npz and plots/*.png, where RUN_DIR is --out or runs/<task>-<YYYYmmdd-HHMMSS>.

exit codes:
  0 done; 2 a mistake in the input, said in one line on stderr, before training where it can be found
  then (after training, nothing trained is lost: the run is saved without plots, or elsewhere); 130
  interrupted (Ctrl-C while training saves nothing; after it, the results are saved without plots).
"""


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare", help="train every loss on identical models over seeds and compare them",
        description=COMPARE_HELP, formatter_class=_FORMATTER,
    )  # fmt: skip
    from lossbench import tasks
    from lossbench.settings import RUN, HeadInit
    from lossbench.thresholds import SELECTION_METRICS

    g = p.add_argument_group("what to compare")
    g.add_argument("--task", required=True, choices=tasks.names(), help="the task: data, splits and model body")
    g.add_argument("--losses", default=",".join(RUN.losses), metavar="LIST",
                   help="comma-separated loss families or labelled variants (bce@weighted); default: %(default)s")
    g.add_argument("--impl", default=RUN.impl, metavar="IMPL",
                   help="handwritten | naive | reference | package.module:function, for all losses, or loss=impl pairs "
                        "separated by commas (bce=mysolution:my_bce); default: %(default)s")
    g.add_argument("--baseline", metavar="LOSS", help="the loss that paired differences refer to (default: bce, else the first)")
    g.add_argument("--loss-option", action="append", default=[], metavar="LOSS.KEY=VALUE",
                   help="a per-loss setting, repeatable: bce.pos_weight=4, softmax_ce.head_lr_scale=0.5 (`lossbench losses` "
                        "lists each loss's options; focal.gamma=1 needs --losses with focal)")
    t = p.add_argument_group("training (defaults: the task's own, which `lossbench tasks` lists)")
    t.add_argument("--seeds", type=_seeds, metavar="N|LIST",
                   help="models per loss: N trains seeds 0..N-1; a list such as 3,7 trains those seeds (to rerun one)")
    t.add_argument("--epochs", type=_positive(int, "--epochs"), metavar="N", help="passes over the training split")
    t.add_argument("--lr", type=_positive(float, "--lr"), metavar="RATE", help="learning rate, the same for every loss")
    t.add_argument("--batch-size", type=_positive(int, "--batch-size"), metavar="N", help="examples per minibatch")
    t.add_argument("--optimizer", choices=("adam", "sgd"), help="Adam or plain SGD (computed as torch.optim's, for all models at once)")
    t.add_argument("--head-init", choices=typing.get_args(HeadInit), default=RUN.head_init,
                   help="matched: every head starts as the same function (default; softmax across labels, which "
                        "no set of sigmoids equals, starts from the same logits); independent: drawn separately")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any field of the task's Config, repeatable: --set hidden=64 --set val_fraction=0.25; "
                        "a setting of the generated data with --data (n_train, ...), or of a --data folder without it "
                        "(image_size, mias_*), is refused rather than ignored")
    t.add_argument("--target", choices=("patch", "grid"), help="mammography only: one label per patch or one per area")
    t.add_argument("--quick", action="store_true",
                   help="the task's seconds-long smoke settings (fewer seeds and epochs, and for the image tasks "
                        "fewer generated examples: a --data folder is still read whole; `lossbench tasks` lists them): "
                        "to try a command, not to draw conclusions from")
    t.add_argument("--threshold-metric", choices=SELECTION_METRICS, default=RUN.threshold_metric,
                   help="what the best threshold maximises on the validation split (default: accuracy); balanced_accuracy "
                        "(mean of sensitivity and specificity) suits a rare positive class; exact_match needs several outputs")
    r = p.add_argument_group("where it runs and what it writes")
    r.add_argument("--device", default=RUN.device, metavar="DEVICE", help="auto | cpu | cuda; default: %(default)s (CUDA when present)")
    r.add_argument(
        "--threads", type=_positive(int, "--threads", at_most=MAX_THREADS), default=None, metavar="N",
        help="CPU threads for torch (default: torch's choice); on a busy machine --threads 1 is often faster",
    )  # fmt: skip
    r.add_argument("--data", metavar="PATH", type=_named("--data"),
                   help="your own data in the task's real format: titanic a CSV (titanic3, or Kaggle's train.csv), "
                        "multilabel a fastai PASCAL_2007 folder (train.csv and train/), mammography a mini-MIAS folder (default: the shipped "
                        "Titanic passengers, generated digit canvases, generated SYNTHETIC patches)")
    r.add_argument("--out", metavar="DIR", type=_named("--out"), help="the run directory to create (default: runs/<task>-<YYYYmmdd-HHMMSS>)")
    r.add_argument("--json", action="store_true", help="print the results as JSON on stdout instead of the table")
    r.add_argument("--no-plots", action="store_true", help="skip drawing the plots")  # fmt: skip
    p.set_defaults(func=_cmd_compare)


def build_parser() -> argparse.ArgumentParser:
    """The `lossbench` parser with every subcommand.

    >>> args = build_parser().parse_args(["compare", "--task", "titanic", "--quick", "--seeds", "3"])
    >>> args.task, args.quick, args.seeds, args.losses
    ('titanic', True, 3, 'softmax_ce,bce,mse')
    """
    parser = _Parser(
        prog="lossbench",
        description=(
            "Train identical models with different losses (softmax cross-entropy, binary cross-entropy, "
            "MSE, focal) and compare them with confidence intervals over seeds.\n\n"
            "examples:\n"
            "  lossbench compare --task titanic          a table of every loss, and plots in runs/titanic-<time>/\n"
            "  lossbench compare --task titanic --quick  the same in about 10 s, with fewer seeds and epochs\n"
            "  lossbench tasks                           what tasks there are\n"
            "  lossbench COMMAND --help                  what a command does, prints and writes"
        ),
        formatter_class=_FORMATTER,
    )
    import torch

    from lossbench import __version__

    parser.add_argument("--version", action="version", version=f"lossbench {__version__} (torch {torch.__version__})",
                        help="print lossbench's version and torch's, and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_compare(sub)

    p = sub.add_parser(
        "tasks", help="list the tasks and their training defaults", formatter_class=_FORMATTER,
        description="List the tasks `lossbench compare --task` accepts: name and what it is, then its training defaults "
                    "(which --seeds, --epochs, --set KEY=VALUE change) and what --quick changes.\n\n"
                    "example:\n  lossbench tasks",
    )  # fmt: skip
    p.set_defaults(func=_cmd_tasks)
    p = sub.add_parser(
        "losses", help="list the loss families and their implementations, a line each", formatter_class=_FORMATTER,
        description="List the loss families, a line each: name, head, implementations, options and what it is.\n\n"
                    "example:\n  lossbench losses",
    )  # fmt: skip
    p.set_defaults(func=_cmd_losses)
    p = sub.add_parser(
        "show", help="reprint the tables of a saved run", formatter_class=_FORMATTER,
        description="Reprint the per-loss table and the paired differences of a saved run, and list its files.\n"
                    "Nothing is recomputed or written: it prints what `lossbench compare` printed for the run.\n\n"
                    "examples:\n  lossbench show runs/titanic-20250101-120000\n  lossbench show runs/titanic-20250101-120000 --json\n\n"
                    "exit codes:\n  0 done; 2 not a run directory, or a damaged one (a file missing, cut short or edited),\n"
                    "  said in one line on stderr.",
    )  # fmt: skip
    p.add_argument("run_dir", metavar="RUN_DIR", type=_named("RUN_DIR"), help="a directory written by `lossbench compare`")
    p.add_argument("--json", action="store_true", help="print the results as one JSON document instead of the tables: the "
                   "task, settings, per-loss table, paired differences, summary.csv's rows, the notes and the files")
    p.set_defaults(func=_cmd_show)
    p = sub.add_parser(
        "plot", help="redraw the plots of a saved run", formatter_class=_FORMATTER,
        description="Redraw every plot of a saved run into RUN_DIR/plots/ and print their paths. Each figure\n"
                    "replaces its old PNG of the same name; other files in that folder are left alone.\n\nexample:\n  lossbench plot runs/titanic-20250101-120000 --epoch 5",
    )  # fmt: skip
    p.add_argument("run_dir", metavar="RUN_DIR", type=_named("RUN_DIR"), help="a directory written by `lossbench compare`")
    p.add_argument("--epoch", type=int, metavar="N", help="the epoch of the gradient-allocation panels drawn at one epoch: by confidence, per output unit, per label (default: the last)")
    p.set_defaults(func=_cmd_plot)

    from lossbench.exercises.commands import add_commands

    add_commands(sub)  # `lossbench check`, `lossbench grade`, `lossbench exercises export`
    return parser


def _unrecognized(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]) -> typing.NoReturn:
    """The error for words that no option takes, from the (sub)command they were given to, with the nearest
    option when one is close (`--epoch` -> `--epochs`)."""
    command = parser
    while True:  # down to the subcommand that was run: `lossbench exercises export`
        chosen = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
        if not chosen or getattr(args, chosen[0].dest, None) is None:
            break
        command = chosen[0].choices[getattr(args, chosen[0].dest)]
    options = [o for a in command._actions for o in a.option_strings]
    near = difflib.get_close_matches(extra[0].split("=")[0], options, n=1) if extra[0].startswith("-") else []
    hint = f"; did you mean {near[0]}?" if near else ""
    command.error(f"unrecognized arguments: {' '.join(extra)}{hint}")


def _one_line_warning(prefix: str, message, category, filename, lineno, file=None, line=None) -> None:
    r"""A warning as one stderr line, without the file, line number and source line Python prints after it.

    >>> _one_line_warning("lossbench compare", UserWarning("could not be vectorised:\n  x"), UserWarning, "f.py", 3, sys.stdout)
    lossbench compare: warning: could not be vectorised: x
    """
    print(f"{prefix}: warning: {' '.join(str(message).split())}", file=sys.stderr if file is None else file)


def _one_line(err: BaseException) -> str:
    r"""An error's message on one line: a line break inside it (a path with a newline in its name, say) written as \n.

    >>> _one_line(ValueError("Expected a CSV file at /tmp/a\nb.csv, but there is no such file."))
    'Expected a CSV file at /tmp/a\\nb.csv, but there is no such file.'
    """
    return str(err).replace("\r", "\\r").replace("\n", "\\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 a check failed, 2 a usage or data error, 130 interrupted).

    >>> main(["losses"])
    softmax_ce  two_logit ...
    0
    """
    try:
        parser = build_parser()  # imports torch: Ctrl-C may come now
        args, extra = parser.parse_known_args(argv)
        if extra:
            _unrecognized(parser, args, extra)
    except UsageError as err:
        print(f"{err.prog or 'lossbench'}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as done:  # --help
        return done.code if isinstance(done.code, int) else EXIT_OK
    except KeyboardInterrupt:
        print("lossbench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    func: Callable[[argparse.Namespace], int] = args.func
    command = " ".join(filter(None, (args.command, getattr(args, "action", None))))  # "exercises export"
    try:
        with warnings.catch_warnings():  # restores Python's own warning printer afterwards
            warnings.showwarning = functools.partial(_one_line_warning, f"lossbench {command}")
            return func(args)
    except (UsageError, ValueError) as err:
        print(f"lossbench {command}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"lossbench {command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the output went to `head` or a pager that closed early: nothing is lost
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that Python's exit does not complain
        return EXIT_OK
    except OSError as err:  # the system refused a file: the reason and the path say what to change (a name too long, ...)
        print(f"lossbench {command}: error: {_one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as err:  # a user's function called sys.exit(): it must not pass for a finished command (exit 0)
        print(f"lossbench {command}: error: the code the command ran (a loss function of yours, say) called "
              f"sys.exit({err.code!r}); the command stopped there", file=sys.stderr)
        return EXIT_USAGE
    except Exception as err:  # noqa: BLE001 - one line, never a traceback; LOSSBENCH_TRACEBACK=1 shows it
        if os.environ.get("LOSSBENCH_TRACEBACK"):
            raise
        print(f"lossbench {command}: error: {type(err).__name__}: {_one_line(err)} (unexpected; LOSSBENCH_TRACEBACK=1 shows "
              "where it happened)", file=sys.stderr)
        return EXIT_USAGE


def run() -> None:
    """The ``lossbench`` program: :func:`main`, then exit with its code.

    Once the command is done, Ctrl-C is ignored: pressed while Python shuts down (joining threads,
    running exit handlers), it would print an "Exception ignored" traceback after a finished command. So
    a thread still running then (one that a student's checked function started) would make the program
    wait for ever: the program exits without waiting for it, and says so.
    """
    code = main()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    running = [t.name for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if running:  # a checked function's thread, say: Python's exit would wait for it, for ever, Ctrl-C ignored
        print(f"lossbench: stopped {len(running)} thread{'s' if len(running) > 1 else ''} still running at the end "
              f"({', '.join(running[:3])}), started by the code the command ran", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
