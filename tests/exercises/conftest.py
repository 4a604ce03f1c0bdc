"""Fixtures shared by the exercise tests."""
from __future__ import annotations

import sys

import pytest


@pytest.fixture
def student_dir(tmp_path, monkeypatch):
    """A fresh working directory holding the student's modules; sys.path and sys.modules restored after."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("student_"):
            del sys.modules[name]
