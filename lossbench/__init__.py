"""lossbench: compare loss functions on identical models, and see where each one sends its gradient.

>>> import lossbench
>>> lossbench.compare  # doctest: +ELLIPSIS
<function compare at ...>
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Result", "__version__", "compare", "load"]


def __getattr__(name: str):
    """Import the runner only when it is first used, so `import lossbench` and the CLI start fast."""
    if name == "compare":
        from lossbench.runner import compare

        return compare
    if name in ("Result", "load"):
        from lossbench import results

        return getattr(results, name)
    raise AttributeError(f"module 'lossbench' has no attribute {name!r}")
