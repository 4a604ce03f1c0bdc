"""Keeping freed memory: a warmed-up training run no longer page-faults; the user's malloc settings win."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

glibc_only = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), "gnu_get_libc_version"),
    reason="malloc's thresholds are glibc's",
)

# Train the Titanic grid (30 models) three times in one process; print each run's minor page faults.
TRAIN_THREE_TIMES = """
import dataclasses, resource, sys, torch
from lossbench import runner
from lossbench.tasks import get
cfg = dataclasses.replace(runner.resolve_config("titanic"), epochs=3)
task = get("titanic").load(cfg)
setups = runner.resolve_losses(("softmax_ce", "bce", "mse"), "handwritten", None, task, torch.device("cpu"), torch.float32)
faults = []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    runner.train(task, setups, cfg, list(range(10)))
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(*faults)
"""


def _python(code: str, *args: str, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, env={**environment, **env}, check=True)
    return out.stdout.strip()


@glibc_only
def test_a_warmed_up_training_run_reuses_its_memory_instead_of_faulting_in_fresh_pages():
    # the first run grows the heap; later runs reuse it. With glibc's default thresholds each later run
    # faults in about 10,000 fresh pages (measured on the 2-core CI machine), so this fails if nothing is set.
    kept = [int(n) for n in _python(TRAIN_THREE_TIMES).split()]
    assert max(kept[1:]) < 1024, kept  # less than one 4 MB buffer's pages


@glibc_only
def test_the_thresholds_are_set_on_glibc_unless_the_user_tuned_malloc():
    code = "from lossbench import allocator; print(allocator.keep_freed_memory(), allocator.keep_freed_memory())"
    assert _python(code) == "True True"  # set once, then remembered
    assert _python(code, MALLOC_TRIM_THRESHOLD_="1000000") == "False False"
    assert _python(code, GLIBC_TUNABLES="glibc.malloc.trim_threshold=1000000") == "False False"
