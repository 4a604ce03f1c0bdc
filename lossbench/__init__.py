"""lossbench: compare loss functions on identical models, and see where each one sends its gradient."""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
