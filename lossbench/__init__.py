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


def __getattr__(name: str):
    """Import the runner only when it is first used, so `import lossbench` and the CLI start fast."""
    if name == "compare":
        from lossbench.runner import compare

        return compare
    if name in ("Result", "load"):
        from lossbench import results

        return getattr(results, name)
    raise AttributeError(f"module 'lossbench' has no attribute {name!r}")
