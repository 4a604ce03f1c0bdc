"""lossbench: compare loss functions on identical models, and see where each one sends its gradient."""
from __future__ import annotations

__version__ = "0.1.0"

from lossbench.results import Result, load  # noqa: E402
from lossbench.runner import compare  # noqa: E402

__all__ = ["Result", "__version__", "compare", "load"]
