"""The package's public submodules: reachable as attributes right after `import lossbench`, and imported only then."""
from __future__ import annotations

import subprocess
import sys

import pytest

import lossbench


def _run(code: str) -> str:
    """Run ``code`` in a fresh interpreter, where no other test has imported a submodule already."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_public_submodules_are_attributes_of_a_fresh_import():
    code = (
        "import sys, types, lossbench\n"
        "print('torch' in sys.modules)\n"
        "for name in ('losses', 'plots', 'stats', 'thresholds'):\n"
        "    print(name, isinstance(getattr(lossbench, name), types.ModuleType))\n"
        "print(lossbench.losses.get('bce').__name__)"
    )
    assert _run(code).splitlines() == [
        "False",  # importing lossbench stays light
        "losses True",
        "plots True",
        "stats True",
        "thresholds True",
        "binary_cross_entropy_with_logits",
    ]


@pytest.mark.parametrize("name", lossbench.SUBMODULES)
def test_every_listed_submodule_is_importable_by_attribute(name):
    module = getattr(lossbench, name)
    assert module.__name__ == f"lossbench.{name}"
    assert name in dir(lossbench)


def test_an_unknown_attribute_is_still_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        lossbench.nothing_here
