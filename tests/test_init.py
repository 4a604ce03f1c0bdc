"""The package's top level: light to import, and OpenMP threads that sleep while they wait."""
from __future__ import annotations

import os
import subprocess
import sys


def _run(code: str, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    environment.update(env)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=True)
    return out.stdout.strip()


def test_import_sets_a_passive_openmp_wait_policy_unless_one_is_chosen():
    code = "import os, lossbench; print(os.environ['OMP_WAIT_POLICY'])"
    assert _run(code) == "PASSIVE"
    assert _run(code, OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"


def test_import_does_not_load_torch_until_compare_is_used():
    code = "import sys, lossbench; print('torch' in sys.modules); lossbench.compare; print('torch' in sys.modules)"
    assert _run(code).split() == ["False", "True"]
