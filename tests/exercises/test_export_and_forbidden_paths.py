"""Edge paths of the notebook export (what it refuses, makes and writes) and of the library-call recorder (what it names, in which order)."""
from __future__ import annotations

import os
import types

import nbformat
import pytest
import torch

from lossbench.exercises import notebooks as nbx
from lossbench.exercises import forbidden
from lossbench.exercises.forbidden import CallRecorder, Forbidden


def calls(rule: Forbidden, fn) -> list[str]:
    with CallRecorder(rule) as recorder:
        fn()
    return recorder.calls


def _fake_module(name: str, source: str) -> types.ModuleType:
    """A module named `name` that has run `source` (not in sys.modules: nothing imports it by name)."""
    module = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


# --- notebooks.py: export -----------------------------------------------------------------------


def test_export_makes_every_missing_parent_of_outdir(tmp_path):
    """OUTDIR and each missing folder above it are made, as the docstring promises."""
    out = tmp_path / "course" / "week1" / "handout"
    written = nbx.export("plain", out)
    assert written == [out / "losses.ipynb", out / "thresholds.ipynb"]
    assert sorted(p.name for p in out.iterdir()) == ["losses.ipynb", "thresholds.ipynb"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_export_to_a_special_file_is_refused_as_not_a_folder(tmp_path):
    """An OUTDIR that exists but is no folder (a named pipe, not only a regular file) is refused before anything is made."""
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ValueError, match=r"^Expected `outdir` to be a folder, but '.*/pipe' is a file; choose another path\.$"):
        nbx.export("plain", tmp_path / "pipe")
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]


@pytest.mark.parametrize("message, said", [("", "ValueError"), ("the first line\nthe second line", "the first line")],
                         ids=["no-text", "several-lines"])
def test_a_solution_notebook_that_cannot_be_read_is_named_in_one_line(tmp_path, monkeypatch, message, said):
    """The refusal quotes the first line of the reader's error, or the error's type when it has no text."""
    def unreadable(*args, **kwargs):
        raise ValueError(message)

    monkeypatch.setattr(nbformat, "read", unreadable)
    with pytest.raises(ValueError, match=r"^Expected every \*_solutions\.ipynb in `source` to be a notebook, but "
                                         rf"'.*losses_solutions\.ipynb' is not one \({said}\)\.$"):
        nbx.export("plain", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_invalid_generated_notebook_is_never_written(tmp_path, monkeypatch):
    """Every notebook is validated before any is written: an invalid one stops the export and OUTDIR stays as it was."""
    def invalid(solution):
        nb = nbformat.v4.new_notebook()
        nb.cells.append(nbformat.from_dict({"id": "bogus", "cell_type": "bogus", "metadata": {}, "source": ""}))
        return nb

    monkeypatch.setattr(nbx, "student_notebook", invalid)
    with pytest.raises(nbformat.ValidationError):
        nbx.export("plain", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_exported_notebook_is_utf8_and_ends_with_a_newline(tmp_path):
    """The file holds nbformat's text of the generated notebook, non-ASCII text as UTF-8, with a final newline."""
    source = tmp_path / "source"
    source.mkdir()
    solution = nbformat.read(nbx.solution_notebooks()[0], as_version=4)
    solution.cells.insert(0, nbformat.v4.new_markdown_cell("Week 1 — naïve losses → better ones", id="intro"))
    nbformat.write(solution, source / "losses_solutions.ipynb")
    (path,) = nbx.export("plain", tmp_path / "out", source=source)
    assert path.read_bytes() == (nbformat.writes(nbx.student_notebook(solution)) + "\n").encode("utf-8")
    assert nbformat.read(path, as_version=4).cells[0].source == "Week 1 — naïve losses → better ones"


# --- forbidden.py: the recorder -----------------------------------------------------------------


def test_forbidden_functions_are_named_in_the_order_they_were_entered():
    """A forbidden function that calls back into other code, which enters a second one: the first is named first."""
    module = _fake_module("lossbench.losses.fake_nested", "def outer(callback):\n    return callback()\n\n"
                                                          "def inner():\n    return 1\n")
    rule = Forbidden(modules=("lossbench.losses",))
    assert calls(rule, lambda: module.outer(lambda: module.inner())) == [
        "lossbench.losses.fake_nested.outer", "lossbench.losses.fake_nested.inner"]


def test_a_function_of_the_forbidden_module_itself_is_recorded_not_only_of_its_submodules():
    """The rule's module counts as well as what is under it: `Categorical` is defined in torch.distributions.categorical."""
    module = _fake_module("lossbench.thresholds", "def best(x):\n    return x\n")
    assert calls(Forbidden(modules=("lossbench.thresholds",)), lambda: module.best(1)) == ["lossbench.thresholds.best"]
    from torch.distributions import Categorical

    seen = calls(Forbidden(modules=("torch.distributions.categorical",)), lambda: Categorical(logits=torch.zeros(2, 3)))
    assert seen[0] == "torch.distributions.categorical.Categorical.__init__"


def test_the_kernel_recorder_is_not_wrapped_for_torch_dynamo():
    """The recorder's __torch_dispatch__ stays its own function: torch's dynamo wrapper would import torch._dynamo, seconds per checked process."""
    dispatch = forbidden._KernelRecorder.__dict__["__torch_dispatch__"]
    assert dispatch.__code__.co_filename == forbidden.__file__ and not hasattr(dispatch, "__wrapped__")


@pytest.mark.parametrize("text", ["{}", "[1, 2]", '"a notebook"', '{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": 3}'])
def test_a_solution_file_of_json_that_is_not_a_notebook_is_refused_by_name(tmp_path, text):
    """JSON that is no notebook (a schema error, or a list or string where nbformat expects a mapping) is named too."""
    source = tmp_path / "source"
    source.mkdir()
    for path in nbx.solution_notebooks():
        (source / path.name).write_bytes(path.read_bytes())
    (source / "thresholds_solutions.ipynb").write_text(text)
    with pytest.raises(ValueError, match=r"^Expected every \*_solutions\.ipynb in `source` to be a notebook, but "
                                         r"'.*thresholds_solutions\.ipynb' is not one \(.+\)\.$"):
        nbx.export("plain", tmp_path / "out", source=source)
    assert not (tmp_path / "out").exists()
