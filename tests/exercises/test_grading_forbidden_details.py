"""Finer rules of grading, the library-call recorder and the exercise commands: the reasons a gradebook
gives, what the recorder names and leaves behind, and what `lossbench grade` passes on and prints."""
from __future__ import annotations

import inspect
import os
import sys
import types

import nbformat
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from lossbench.cli import UsageError
from lossbench.cli import main as cli_main
from lossbench.exercises import commands, grading
from lossbench.exercises.forbidden import (
    AUTOGRAD_FUNCTIONS,
    BCE_FUNCTIONS,
    MSE_FUNCTIONS,
    SOFTMAX_CE_FUNCTIONS,
    SOFTMAX_CE_KERNELS,
    CallRecorder,
    Forbidden,
    _FunctionRecorder,
)

Z = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
Y = torch.tensor([0, 2, 1, 1])
P = torch.rand(4, 3, dtype=torch.float64)
SIGNS = 2 * P.round() - 1
RIGHT = """
import torch.nn.functional as F

def {name}(logits, target):
    return -(target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits)).mean()
"""


def main(argv: list[str]) -> int:
    """The command line's exit code, whether argparse exits (SystemExit) or main returns it."""
    try:
        return cli_main(argv)
    except SystemExit as done:
        return done.code


def calls(rule: Forbidden, fn) -> list[str]:
    with CallRecorder(rule) as recorder:
        fn()
    return recorder.calls


def _fake_module(name: str, source: str) -> types.ModuleType:
    """A module named `name` that has run `source` (not in sys.modules: nothing imports it by name)."""
    module = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


# --- forbidden.py: the recorder ------------------------------------------------------------------

HOW_EACH_FUNCTION_RUNS = {  # each forbidden Python name, called as a student would call it
    "torch.nn.functional.cross_entropy": lambda: F.cross_entropy(Z, Y),
    "torch.nn.functional.nll_loss": lambda: F.nll_loss(Z, Y),
    "torch.nn.functional.log_softmax": lambda: F.log_softmax(Z, 1),
    "torch.log_softmax": lambda: torch.log_softmax(Z, 1),
    "torch._log_softmax": lambda: torch._log_softmax(Z, 1, False),
    "torch.Tensor.log_softmax": lambda: Z.log_softmax(1),
    "torch.special.log_softmax": lambda: torch.special.log_softmax(Z, 1),
    "torch._C._nn.cross_entropy_loss": lambda: torch._C._nn.cross_entropy_loss(Z, Y),
    "torch._C._nn.nll_loss": lambda: torch._C._nn.nll_loss(Z, Y),
    "torch._C._nn.nll_loss_nd": lambda: torch._C._nn.nll_loss_nd(Z, Y),
    "torch.nn.functional.binary_cross_entropy_with_logits": lambda: F.binary_cross_entropy_with_logits(Z, P),
    "torch.binary_cross_entropy_with_logits": lambda: torch.binary_cross_entropy_with_logits(Z, P),
    "torch.nn.functional.binary_cross_entropy": lambda: F.binary_cross_entropy(P, P),
    "torch._C._nn.binary_cross_entropy": lambda: torch._C._nn.binary_cross_entropy(P, P),
    "torch.nn.functional.soft_margin_loss": lambda: F.soft_margin_loss(Z, SIGNS),
    "torch._C._nn.soft_margin_loss": lambda: torch._C._nn.soft_margin_loss(Z, SIGNS),
    "torch.nn.functional.multilabel_soft_margin_loss": lambda: F.multilabel_soft_margin_loss(Z, P),
    "torch.nn.functional.mse_loss": lambda: F.mse_loss(Z, P),
    "torch._C._nn.mse_loss": lambda: torch._C._nn.mse_loss(Z, P),
    "torch.nn.functional.huber_loss": lambda: F.huber_loss(Z, P, delta=1e6),
    "torch._C._nn.huber_loss": lambda: torch._C._nn.huber_loss(Z, P),
    "torch.nn.functional.smooth_l1_loss": lambda: F.smooth_l1_loss(Z, P, beta=1e6),
    "torch._C._nn.smooth_l1_loss": lambda: torch._C._nn.smooth_l1_loss(Z, P),
    "torch.nn.functional.l1_loss": lambda: F.l1_loss((Z - P) ** 2, torch.zeros_like(P)),
    "torch._C._nn.l1_loss": lambda: torch._C._nn.l1_loss(Z, P),
    "torch.nn.functional.gaussian_nll_loss": lambda: F.gaussian_nll_loss(Z, P, torch.ones_like(P)),
    "torch.autograd.grad": lambda: torch.autograd.grad((Z * 2).sum(), Z),
    "torch.autograd.backward": lambda: torch.autograd.backward((Z * 2).sum(), inputs=[Z]),
    "torch.Tensor.backward": lambda: (Z * 2).sum().backward(inputs=[Z]),
}


def test_each_listed_function_has_a_way_to_run_above():
    # a name dropped from a list (or misspelt: names this torch lacks are skipped silently) is a loophole
    assert set(SOFTMAX_CE_FUNCTIONS + BCE_FUNCTIONS + MSE_FUNCTIONS + AUTOGRAD_FUNCTIONS) == set(HOW_EACH_FUNCTION_RUNS)


@pytest.mark.parametrize("name", sorted(HOW_EACH_FUNCTION_RUNS))
def test_every_forbidden_function_is_recorded_under_its_listed_name(name):
    # multilabel_soft_margin_loss has no kernel of its own: only its Python name can catch it
    assert calls(Forbidden(functions=(name,)), HOW_EACH_FUNCTION_RUNS[name]) == [name]
    assert calls(Forbidden(functions=(name,)), lambda: torch.logsumexp(Z, 1).sum()) == []


def test_a_function_called_twice_is_listed_once():
    # the checker prints `calls ...` from this list: a loss in a loop must not repeat its name
    rule = Forbidden(SOFTMAX_CE_FUNCTIONS, SOFTMAX_CE_KERNELS)
    twice = calls(rule, lambda: (F.cross_entropy(Z, Y), F.cross_entropy(Z, Y)))
    assert twice == ["torch.nn.functional.cross_entropy", "aten::_log_softmax", "aten::nll_loss_forward"]


def test_a_forbidden_module_function_called_twice_is_listed_once():
    module = _fake_module("lossbench.losses.fake_twice", "def loss(x):\n    return x.sum()\n")
    rule = Forbidden(modules=("lossbench.losses",))
    assert calls(rule, lambda: (module.loss(Z), module.loss(Z))) == ["lossbench.losses.fake_twice.loss"]


def test_a_module_whose_name_only_starts_like_a_forbidden_one_is_allowed():
    # "lossbench.losses_extra" is not under "lossbench.losses": the prefix must end at a dot
    module = _fake_module("lossbench.losses_extra", "def loss(x):\n    return x.sum()\n")
    assert calls(Forbidden(modules=("lossbench.losses",)), lambda: module.loss(Z)) == []
    inside = _fake_module("lossbench.losses.extra", "def loss(x):\n    return x.sum()\n")
    assert calls(Forbidden(modules=("lossbench.losses",)), lambda: inside.loss(Z)) == ["lossbench.losses.extra.loss"]


def test_a_method_is_named_with_its_class():
    # `Loss.forward`, not a bare `forward` the student cannot place
    module = _fake_module("lossbench.losses.fake_class", "class Loss:\n    def forward(self, x):\n        return x.sum()\n")
    loss = module.Loss()
    assert calls(Forbidden(modules=("lossbench.losses",)), lambda: loss.forward(Z)) == [
        "lossbench.losses.fake_class.Loss.forward"]


def test_a_dataclass_made_while_importing_a_forbidden_module_is_not_a_call(monkeypatch):
    # the @dataclass decorator generates __init__ through a function run with the module's globals
    module = types.ModuleType("lossbench.losses.fake_config")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    source = "from dataclasses import dataclass\n\n@dataclass\nclass Config:\n    scale: float = 2.0\n"
    rule = Forbidden(modules=("lossbench.losses",))
    assert calls(rule, lambda: exec(compile(source, "<fake_config>", "exec"), module.__dict__)) == []
    assert module.Config().scale == 2.0


def test_a_recorder_without_modules_leaves_an_existing_profiler_in_place():
    # a rule with no modules sets no profiler, so it must not reset the one a debugger or coverage set
    def profiler(frame, event, arg):
        pass

    sys.setprofile(profiler)
    try:
        with CallRecorder(Forbidden(SOFTMAX_CE_FUNCTIONS, SOFTMAX_CE_KERNELS)):
            torch.sigmoid(Z)
        assert sys.getprofile() is profiler
    finally:
        sys.setprofile(None)


def test_an_unhashable_callable_passes_through_the_function_recorder():
    # a callable object without __hash__ cannot be a dictionary key: it is simply not a watched function
    class Unhashable:
        __hash__ = None

        def __call__(self, x, scale=1):
            return x * scale

    seen: list[str] = []
    recorder = _FunctionRecorder({F.cross_entropy: "torch.nn.functional.cross_entropy"}, seen)
    assert recorder.__torch_function__(Unhashable(), (), (3,), {"scale": 2}) == 6
    assert seen == []


def test_the_recorded_functions_return_what_they_return_outside_the_block():
    # the modes forward every argument, keyword ones included
    with CallRecorder(Forbidden(SOFTMAX_CE_FUNCTIONS, SOFTMAX_CE_KERNELS)):
        summed = F.cross_entropy(Z, Y, reduction="none")
        rows = torch.sum(Z, dim=1, keepdim=True)
    assert torch.equal(summed, F.cross_entropy(Z, Y, reduction="none")) and summed.shape == (4,)
    assert rows.shape == (4, 1)


# --- grading.py: the reasons of the gradebook rows ----------------------------------------------

def result(number: int, status: str = "pass", group: str = "basic", hint: str | None = None,
           problems: tuple[str, ...] = (), nonfinite: bool = False) -> dict:
    """One case's result as the child sends it back."""
    return {"number": number, "group": group, "status": status, "hint": hint, "problems": list(problems),
            "nonfinite": nonfinite, "expected": "1.00", "actual": "2.00" if status != "pass" else "1.00"}


def total_reason(results: list[dict], stderr: str = "", notes: tuple[str, ...] = ()) -> str:
    outcome = {"error": None, "notes": list(notes), "results": results}
    return grading._rows("ada.py", "bce", 0, {"basic": len(results)}, outcome, stderr, None)[-1]["reason"]


def test_not_attempted_is_the_reason_only_when_no_case_was_attempted():
    # a function that raises NotImplementedError for soft targets only was attempted
    skipped = result(2, "not attempted", problems=("raised NotImplementedError",))
    assert total_reason([result(1, "not attempted"), result(2, "not attempted")]) == "not attempted"
    assert total_reason([result(1), skipped]) == "1 of 2 cases fail: case 2 (basic): expected 1.00, got 2.00; raised NotImplementedError"


def test_a_single_nonfinite_case_is_one_case():
    assert total_reason([result(1), result(2, "fail", nonfinite=True)]) == "NaN/inf output in 1 case"
    assert total_reason([result(1, "fail", nonfinite=True), result(2, "fail", nonfinite=True)]) == "NaN/inf output in 2 cases"


def test_library_and_error_reasons_name_the_first_in_sorted_order_whatever_the_case_order():
    library = [result(1, "library", problems=("calls torch.nn.functional.nll_loss: the library's version",)),
               result(2, "library", problems=("calls torch.nn.functional.cross_entropy: the library's version",))]
    for order in (library, library[::-1]):
        assert total_reason(order) == "calls the library: torch.nn.functional.cross_entropy"
    errors = [result(1, "error", problems=("raised ValueError: shapes",)), result(2, "error", problems=("raised IndexError: dim",))]
    for order in (errors, errors[::-1]):
        assert total_reason(order) == "raised IndexError: dim"


def test_text_on_stderr_is_cut_to_its_first_line_and_120_characters():
    assert total_reason([result(1)], stderr="x" * 300 + "\nsecond line\n") == "wrote to stderr: " + "x" * 120


def test_notes_of_several_cells_are_joined_with_semicolons():
    notes = ("cell 2 raised NameError", "cell 5 raised SystemExit")
    assert total_reason([result(1)], notes=notes) == "cell 2 raised NameError; cell 5 raised SystemExit"


def test_why_cases_gives_each_hint_once_and_otherwise_the_first_case_s_first_problem():
    hinted = [result(1, "fail", hint="sum instead of mean?"), result(2, "fail", hint="sum instead of mean?")]
    assert grading._why_cases(hinted) == "sum instead of mean?"
    plain = [result(3, "fail", problems=("the value differs", "the gradient differs")), result(4, "fail", problems=("dtype",))]
    assert grading._why_cases(plain) == "case 3 (basic): expected 1.00, got 2.00; the value differs"


def test_the_largest_and_smallest_limits_are_accepted(tmp_path):
    # the bounds are inclusive, as the error message ("at least", "at most") says
    for timeout, memory_mb in ((grading.MAX_TIMEOUT_S, grading.MIN_MEMORY_MB), (0.5, grading.MAX_MEMORY_MB)):
        assert grading.grade(tmp_path, "bce", timeout=timeout, memory_mb=memory_mb, progress=False).empty


def test_grade_s_defaults_are_the_documented_ones():
    # a notebook user calls grade() without limits: 60 s and 2048 MiB, as the module docstring and `grade --help` say
    defaults = {name: p.default for name, p in inspect.signature(grading.grade).parameters.items()}
    assert (defaults["timeout"], defaults["memory_mb"], defaults["seed"]) == (60.0, 2048, None)
    assert (grading.DEFAULT_TIMEOUT_S, grading.DEFAULT_MEMORY_MB) == (60.0, 2048)


def test_check_uses_seed_0_by_default_the_seed_of_the_notebooks_visible_checks():
    """`lossbench check` without --seed checks seed 0's cases, as `check --help` and the student notebooks' reports say."""
    from lossbench.cli import build_parser

    assert build_parser().parse_args(["check", "bce", "mysolution:bce"]).seed == 0


def test_find_submissions_skips_a_folder_named_like_a_submission(tmp_path):
    (tmp_path / "week1.py").mkdir()
    (tmp_path / "ada.py").write_text("")
    assert [p.name for p in grading.find_submissions(tmp_path)] == ["ada.py"]


# --- grading.py: what a child reports, through real child processes ---------------------------

GRADED_AS_LOSS = {  # graded with function="loss"
    "exits0.py": "import os\nos._exit(0)\n",
    "segv.py": "import os, resource, signal\nresource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file\n"
               "os.kill(os.getpid(), signal.SIGSEGV)\n",
    "last_words.py": "import os, sys\nprint('first', file=sys.stderr)\nprint('last words', file=sys.stderr)\n"
                     "sys.stderr.flush()\nos._exit(3)\n",
    "long_error.py": "raise ValueError('x' * 300)\n",
    "missing.py": RIGHT.format(name="bce"),
    "limits.py": "import os, resource, sys\n"
                 "print(f'stdout {os.readlink(\"/proc/self/fd/1\")}, '\n"
                 "      f'{resource.getrlimit(resource.RLIMIT_AS)[0] >> 20} MiB', file=sys.stderr)\n" + RIGHT.format(name="loss"),
}


@pytest.fixture(scope="module")
def loss_gradebook(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("graded_as_loss")
    for name, source in GRADED_AS_LOSS.items():
        (folder / name).write_text(source)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("%matplotlib inline\n!pip install torch\n" + RIGHT.format(name="loss")),
                nbformat.v4.new_raw_cell("not Python: a raw cell is not run")]
    nbformat.write(nb, folder / "magic.ipynb")
    frame = grading.grade(folder, "bce", timeout=10.0, function="loss", seed=3, progress=False)
    totals = frame[frame.group == "total"]
    return dict(zip(totals.submission, zip(totals.score, totals.reason)))


@pytest.mark.parametrize("submission, reason", [
    ("exits0.py", "crashed: exit code 0: no output"),  # a clean exit without a result is a crash too
    ("segv.py", "crashed: killed by SIGSEGV (segmentation fault)"),
    ("last_words.py", "crashed: exit code 3: last words; wrote to stderr: first"),  # the last line says why it died
    ("long_error.py", "raised ValueError while loading: " + "x" * 200),
    ("missing.py", "no function `loss`: define `def loss(logits, target)`"),  # the name graded, not the exercise's
])
def test_a_failing_child_gets_zero_and_its_reason(loss_gradebook, submission, reason):
    assert loss_gradebook[submission] == (0.0, reason)


@pytest.mark.skipif(not os.path.exists("/proc/self/fd/1"), reason="reads where stdout goes from /proc")
def test_a_child_s_stdout_goes_to_dev_null_under_the_default_memory_limit(loss_gradebook):
    # a student's prints must not reach the instructor's terminal; no memory_mb given: the default, 2048 MiB
    assert loss_gradebook["limits.py"] == (1.0, "wrote to stderr: stdout /dev/null, 2048 MiB")


def test_a_notebook_s_magics_and_raw_cells_are_not_run_as_python(loss_gradebook):
    assert loss_gradebook["magic.ipynb"] == (1.0, "")


# --- commands.py -----------------------------------------------------------------------------------

@pytest.fixture
def fake_grade(monkeypatch):
    """grading.grade replaced by one that records its arguments and returns a two-submission gradebook."""
    seen: dict = {}

    def grade(submissions, exercise, **kwargs):
        seen.update(kwargs, exercise=exercise)
        return pd.DataFrame([
            {"submission": "a_very_long_submission_name.py", "exercise": exercise, "seed": kwargs["seed"], "group": "total",
             "passed": 1, "cases": 3, "score": 1 / 3, "reason": "raised ValueError: no"},
            {"submission": "b.py", "exercise": exercise, "seed": kwargs["seed"], "group": "total", "passed": 3, "cases": 3,
             "score": 1.0, "reason": ""},
        ], columns=grading.COLUMNS)

    monkeypatch.setattr(grading, "grade", grade)
    return seen


def test_grade_passes_the_grading_defaults_and_the_options_on(tmp_path, fake_grade, capsys):
    (tmp_path / "a.py").write_text("")
    out = str(tmp_path / "g.csv")
    assert main(["grade", str(tmp_path), "--exercise", "bce", "--seed", "4", "--out", out]) == 0
    assert fake_grade == {"exercise": "bce", "timeout": grading.DEFAULT_TIMEOUT_S, "memory_mb": grading.DEFAULT_MEMORY_MB,
                          "function": None, "seed": 4, "progress": False}
    assert main(["grade", str(tmp_path), "--exercise", "bce", "--seed", "4", "--timeout", "0.5", "--memory-mb", "4096",
                 "--function", "loss", "--quiet", "--out", out]) == 0
    assert fake_grade == {"exercise": "bce", "timeout": 0.5, "memory_mb": 4096, "function": "loss", "seed": 4,
                          "progress": False}


def test_grade_writes_a_gradebook_named_like_a_submission_outside_the_submissions(tmp_path, fake_grade):
    """Only an --out among the submissions is refused for its suffix: grades.py elsewhere is the user's choice."""
    (tmp_path / "submissions").mkdir()
    (tmp_path / "submissions" / "a.py").write_text("")
    out = tmp_path / "records" / "grades.py"
    assert main(["grade", str(tmp_path / "submissions"), "--exercise", "bce", "--seed", "4", "--out", str(out)]) == 0
    assert pd.read_csv(out)["submission"].tolist() == ["a_very_long_submission_name.py", "b.py"]


def test_grade_with_quiet_draws_no_bar_even_on_a_terminal(tmp_path, fake_grade, monkeypatch):
    (tmp_path / "a.py").write_text("")
    monkeypatch.setattr(commands, "_show_bars", lambda: True)
    argv = ["grade", str(tmp_path), "--exercise", "bce", "--seed", "4", "--out", str(tmp_path / "g.csv")]
    assert main(argv) == 0 and fake_grade["progress"] is True
    assert main(argv + ["--quiet"]) == 0 and fake_grade["progress"] is False


def test_grade_aligns_the_scores_under_a_long_submission_name(tmp_path, fake_grade, capsys):
    (tmp_path / "a.py").write_text("")
    assert main(["grade", str(tmp_path), "--exercise", "bce", "--seed", "4", "--out", str(tmp_path / "g.csv")]) == 0
    assert capsys.readouterr().out.splitlines()[:3] == [
        "submission                      score  reason",
        "a_very_long_submission_name.py   0.33  raised ValueError: no",
        "b.py                             1.00  ",
    ]


def test_load_function_without_a_module_name_is_the_format_error():
    with pytest.raises(UsageError, match=r"^Expected the function as package.module:function \(e.g. mysolution:bce\), "
                                         r"but got ':bce'.$"):
        commands.load_function(":bce")


def test_load_function_of_a_notebook_without_an_exercise_names_a_placeholder():
    with pytest.raises(UsageError, match=r'run `lossbench.exercises.report\("EXERCISE", bce\)`'):
        commands.load_function("losses.ipynb:bce")


def test_load_function_looks_in_the_current_folder_first(student_dir, tmp_path_factory):
    # the file the student is working on, not a same-named one elsewhere on sys.path
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "student_first.py").write_text("def bce(z, y):\n    return 'elsewhere'\n")
    (student_dir / "student_first.py").write_text("def bce(z, y):\n    return 'here'\n")
    sys.path.append(str(elsewhere))
    assert commands.load_function("student_first:bce")(None, None) == "here"


def test_load_function_of_a_module_that_raises_a_long_error_keeps_its_first_line(student_dir):
    (student_dir / "student_raises.py").write_text("raise RuntimeError('line one\\nline two')\n")
    with pytest.raises(UsageError) as err:
        commands.load_function("student_raises:bce")
    assert str(err.value) == "could not import 'student_raises': RuntimeError: line one"


@pytest.mark.parametrize("text, message", [
    ("   ", "Expected --out to be the path of a CSV file, such as grades.csv, but got '   '."),
    ("/dev/null", "Expected --out to be a regular file, but '/dev/null' is not one; choose another path."),
])
def test_check_gradebook_path_refuses_blank_names_and_what_is_not_a_regular_file(text, message):
    with pytest.raises(UsageError) as err:
        commands.check_gradebook_path(text)
    assert str(err.value) == message


def test_check_gradebook_path_refuses_a_folder_it_cannot_write(tmp_path, monkeypatch):
    # tests run as root, who may write anywhere: os.access stands in for a read-only folder
    monkeypatch.setattr(os, "access", lambda path, mode: not mode & os.W_OK)
    with pytest.raises(UsageError) as err:
        commands.check_gradebook_path(str(tmp_path / "grades.csv"))
    assert str(err.value) == f"Expected --out to be in a folder you can write to, but {str(tmp_path)!r} is not writable."


def test_exercises_list_ends_each_line_with_the_notebook(capsys):
    from lossbench.exercises.catalog import EXERCISES

    assert main(["exercises", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[-1] for line in lines] == [ex.topic for ex in EXERCISES.values()]
    assert {ex.topic for ex in EXERCISES.values()} == {"losses", "thresholds"}


def test_exercises_list_lines_up_its_three_columns(capsys):
    """Name, signature and notebook each start at one column on every line, past the longest entry before it."""
    from lossbench.exercises.catalog import EXERCISES

    assert main(["exercises", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    exercises = list(EXERCISES.values())
    signature_at = {line.index(ex.signature) for line, ex in zip(lines, exercises)}
    topic_at = {line.rindex(ex.topic) for line, ex in zip(lines, exercises)}
    assert len(signature_at) == 1 and len(topic_at) == 1, lines
    assert signature_at.pop() > max(len(ex.name) for ex in exercises)
    assert topic_at.pop() > max(line.index(ex.signature) + len(ex.signature) for line, ex in zip(lines, exercises))


def test_read_ends_reads_a_file_of_up_to_twice_the_size_whole_and_a_longer_one_as_its_two_ends(tmp_path):
    # rule: the first and the last `size` bytes cover a file of up to 2 * size bytes, which comes back whole, nothing doubled
    from lossbench.exercises.grading import _read_ends

    path = tmp_path / "stderr.txt"
    text = "".join(f"line {i}\n" for i in range(4))  # 28 bytes
    path.write_text(text)
    assert _read_ends(str(path), 20) == text and _read_ends(str(path), 14) == text
    path.write_text(text + "!")  # 29 bytes: more than 2 * 14
    assert _read_ends(str(path), 14) == text[:14] + "\n" + (text + "!")[-14:]
