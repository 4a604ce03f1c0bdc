"""Self-checking exercises for students, and assignment tools for instructors.

Students write a function and ask the checker about it::

    from lossbench.exercises import report, check
    report("bce", my_bce)   # a table of cases: expected, actual, errors, gradient, a hint
    check("bce", my_bce)    # None when every case passes, else ExerciseFailed with the table

The exercises (`EXERCISES`, or `lossbench exercises list`): softmax_ce, bce, bce_probs,
mse, dlogits, accuracy_multi, best_threshold. A function that calls the library's own
version of what it is asked to write (F.binary_cross_entropy_with_logits for bce, ...)
is flagged and does not pass; see `forbidden.py` for how, and for why that is a learning
aid rather than security.
"""
from __future__ import annotations

from lossbench.exercises.catalog import EXERCISES, Exercise, get_exercise
from lossbench.exercises.checker import CaseResult, ExerciseFailed, check, evaluate, format_report, report, score

__all__ = [
    "EXERCISES",
    "CaseResult",
    "Exercise",
    "ExerciseFailed",
    "check",
    "evaluate",
    "format_report",
    "get_exercise",
    "report",
    "score",
]
