"""lossbench: compare loss functions on identical models, and see where each one sends its gradient.

>>> import lossbench
>>> lossbench.compare  # doctest: +ELLIPSIS
<function compare at ...>
"""
from __future__ import annotations

import os

# lossbench trains many small models as one program, in short parallel steps. OpenMP threads that spin
# while they wait for each other collapse when another process shares the cores (measured on 2 busy
# cores: 12 model-epochs/s spinning, 351 sleeping). So threads sleep while they wait, unless you chose
# otherwise; this must be set before torch is imported to take effect.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

__all__ = ["Result", "__version__", "compare", "load"]

SUBMODULES: tuple[str, ...] = (
    "cli", "exercises", "gradients", "graphs", "loop", "losses", "models", "optim",
    "plots", "report", "results", "runner", "stats", "tasks", "thresholds",
)
"""The public submodules, reachable as ``lossbench.losses`` and so on once ``lossbench`` is imported."""


def __getattr__(name: str):
    """Import the runner and the submodules only when first used, so `import lossbench` and the CLI start fast.

    >>> import lossbench
    >>> lossbench.thresholds.threshold_grid(3)
    tensor([0.0100, 0.5000, 0.9900], dtype=torch.float64)
    """
    if name == "compare":
        from lossbench.runner import compare

        return compare
    if name in ("Result", "load"):
        from lossbench import results

        return getattr(results, name)
    if name in SUBMODULES:
        import importlib

        return importlib.import_module(f"lossbench.{name}")  # also sets the attribute: later lookups skip this
    raise AttributeError(f"module 'lossbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names and its submodules, imported or not (for tab completion)."""
    return sorted(set(globals()) | set(SUBMODULES) | set(__all__))
