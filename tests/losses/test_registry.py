"""The registry: every name resolves, options are checked, a user's function loads by import path, errors are clear."""
from __future__ import annotations

import functools
import sys
import textwrap

import numpy as np
import pytest
import torch

from lossbench import losses
from lossbench.losses import bce, focal, mse, softmax_ce
from lossbench.losses.registry import accepted_options

FAMILY_NAMES = ["softmax_ce", "bce", "mse", "focal"]
USAGE = "Expected `loss` to be one of 'softmax_ce', 'bce', 'mse', 'focal', 'softmax_ce:handwritten', "
HINT = "; `lossbench losses` lists them."


def test_families_names_and_heads():
    assert [f.name for f in losses.families()] == FAMILY_NAMES
    assert {f.name: f.head for f in losses.families()} == {
        "softmax_ce": "two_logit", "bce": "one_logit", "mse": "one_logit", "focal": "one_logit"
    }
    assert losses.names() == [f"{f}:{impl}" for f in FAMILY_NAMES for impl in ("handwritten", "naive", "reference")]


@pytest.mark.parametrize("name", losses.names())
def test_every_name_resolves_to_the_registered_function(name):
    family_name, impl = name.split(":")
    assert losses.get(name) is losses.family(family_name).implementations[impl]


def test_a_bare_family_name_is_the_handwritten_implementation():
    assert losses.get("bce") is bce.binary_cross_entropy_with_logits
    assert losses.get("softmax_ce") is softmax_ce.cross_entropy
    assert losses.get("mse") is mse.mse
    assert losses.get("focal") is focal.focal_loss
    assert losses.get("bce:reference") is bce.binary_cross_entropy_reference
    assert losses.get("softmax_ce:naive") is softmax_ce.cross_entropy_naive


@pytest.mark.parametrize("family", losses.families(), ids=lambda f: f.name)
def test_declared_options_are_what_the_implementations_accept(family):
    for impl in ("handwritten", "reference"):
        assert accepted_options(family.implementations[impl]) == family.options + ("reduction",)
    assert accepted_options(family.implementations["naive"]) == ()


def test_options_are_bound_with_partial():
    loss = losses.get("bce", pos_weight=4.0)
    assert isinstance(loss, functools.partial) and loss.keywords == {"pos_weight": 4.0}
    z, y = torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0])
    torch.testing.assert_close(loss(z, y), bce.binary_cross_entropy_with_logits(z, y, pos_weight=4.0))
    ref = losses.get("softmax_ce:reference", label_smoothing=0.1, reduction="sum")
    logits, index = torch.randn(3, 2), torch.tensor([0, 1, 1])
    torch.testing.assert_close(ref(logits, index), torch.nn.functional.cross_entropy(logits, index, label_smoothing=0.1, reduction="sum"))


def test_unknown_options_are_rejected_with_the_accepted_ones():
    with pytest.raises(ValueError) as info:
        losses.get("bce", gamma=2.0)
    assert str(info.value) == (
        "Expected the options of `bce:handwritten` to be among 'pos_weight', 'weight', 'reduction', but got 'gamma'."
    )
    with pytest.raises(ValueError) as info:
        losses.get("focal:naive", alpha=0.5)
    assert str(info.value) == "Expected no options for `focal:naive`, which takes none, but got 'alpha'."


def test_family_curves_check_their_options():
    p = torch.tensor([0.3])
    torch.testing.assert_close(losses.family("bce").grad_wrt_logit(p, 1.0, pos_weight=2.0), 2.0 * (p - 1))
    with pytest.raises(ValueError, match=r"Expected the options of `bce.loss_of_probability` to be among 'pos_weight', 'weight', but got 'gamma'"):
        losses.family("bce").loss_of_probability(p, 1.0, gamma=2.0)


def test_unknown_family():
    with pytest.raises(ValueError) as info:
        losses.family("hinge")
    assert str(info.value) == (
        "Expected `family` to be one of 'softmax_ce', 'bce', 'mse', 'focal', but got 'hinge'; `lossbench losses` lists them."
    )


STUDENT = textwrap.dedent(
    '''
    """A student's own loss, next to where they run lossbench."""
    import torch

    NOT_A_FUNCTION = 3


    def my_bce(output, target, scale=1.0):
        p = torch.sigmoid(output)
        return -scale * (target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean()
    '''
)


@pytest.fixture
def student_dir(tmp_path, monkeypatch):
    """A temporary working directory holding the student's module, removed from sys.modules afterwards."""
    (tmp_path / "lossbench_student_solution.py").write_text(STUDENT)
    (tmp_path / "lossbench_student_broken.py").write_text("import a_dependency_that_is_not_installed\n")
    (tmp_path / "lossbench_student_syntax.py").write_text("def fn(z, y):\n    return (z - y\n")
    (tmp_path / "lossbench_student_exits.py").write_text("import sys\nsys.exit(5)\n")
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for name in ("lossbench_student_solution", "lossbench_student_broken", "lossbench_student_syntax", "lossbench_student_exits"):
        sys.modules.pop(name, None)


def test_a_user_function_loads_from_the_current_directory(student_dir):
    before = list(sys.path)
    fn = losses.get("lossbench_student_solution:my_bce")
    assert sys.path == before  # the working directory was on sys.path only for the import
    z, y = torch.tensor([0.5, -1.0], dtype=torch.float64), torch.tensor([1.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(fn(z, y), bce.binary_cross_entropy_with_logits(z, y))
    scaled = losses.get("lossbench_student_solution:my_bce", scale=2.0)
    torch.testing.assert_close(scaled(z, y), 2 * bce.binary_cross_entropy_with_logits(z, y))
    with pytest.raises(ValueError, match="Expected the options of `lossbench_student_solution:my_bce` to be among 'scale', but got 'pos_weight'"):
        losses.get("lossbench_student_solution:my_bce", pos_weight=2.0)


def test_a_user_function_loads_from_the_import_path():
    assert losses.load_user_function("lossbench.losses.mse:mse_naive") is mse.mse_naive
    assert losses.get("lossbench.losses.focal:focal_loss_reference") is focal.focal_loss_reference


@pytest.mark.parametrize(
    "name, detail",
    [
        pytest.param("hinge", "'hinge'; ", id="unknown-name"),
        pytest.param("bce:fast", "'bce:fast' ('bce' has the implementations handwritten, naive, reference)", id="unknown-impl"),
        pytest.param("lossbench_no_such_module:fn", "'lossbench_no_such_module:fn' (no module named 'lossbench_no_such_module' on the import path or in the current directory", id="no-module"),
        pytest.param("lossbench_student_solution:nothing", "'lossbench_student_solution:nothing' (module 'lossbench_student_solution' has no attribute 'nothing')", id="no-attribute"),
        pytest.param("lossbench_student_solution:NOT_A_FUNCTION", "'lossbench_student_solution:NOT_A_FUNCTION' (lossbench_student_solution.NOT_A_FUNCTION is not a function, it is of type int)", id="not-callable"),
        pytest.param("lossbench_student_broken:fn", "'lossbench_student_broken:fn' (module 'lossbench_student_broken' was found but failed to import: No module named 'a_dependency_that_is_not_installed')", id="broken-module"),
        pytest.param("lossbench_student_syntax:fn", "'lossbench_student_syntax:fn' (module 'lossbench_student_syntax' was found but failed to import: SyntaxError: ", id="syntax-error"),
        pytest.param("lossbench_student_exits:fn", "'lossbench_student_exits:fn' (module 'lossbench_student_exits' was found but failed to import: SystemExit: 5)", id="exits-on-import"),
        pytest.param("a:b:c", "'a:b:c' (an import path has exactly one ':' between module and function)", id="two-colons"),
        pytest.param("mysolution:", "'mysolution:' (module and function must be Python names, as in 'mysolution:my_loss')", id="no-function"),
        pytest.param(":my_loss", "':my_loss' (module and function must be Python names", id="no-module-name"),
        pytest.param("my-solution:my_loss", "'my-solution:my_loss' (module and function must be Python names", id="dash"),
        pytest.param("lossbench_student_solution.py:my_bce", "'lossbench_student_solution.py:my_bce' (name the module, not its file: 'lossbench_student_solution:my_bce', from the folder that holds it)", id="dot-py"),
        pytest.param("./hw/week3.py:my_bce", "'./hw/week3.py:my_bce' (name the module, not its file: 'hw.week3:my_bce', from the folder that holds it)", id="folder-path"),
    ],
)
def test_bad_names_give_one_clear_error(student_dir, name, detail):
    with pytest.raises(ValueError) as info:
        losses.get(name)
    message = str(info.value)
    # a reason comes first, where the line cannot push it off its end; a plain unknown name gets the list of names
    assert message.startswith(USAGE if detail.endswith("; ") else "Expected `loss` to be a built-in name or an import path")
    assert "or an import path 'package.module:function', but got " + detail in message
    assert message.endswith(HINT)


def test_a_module_named_after_a_loss_family_is_named_as_hidden(student_dir):
    (student_dir / "mse.py").write_text("def my_loss(z, y):\n    return (z - y).pow(2).mean()\n")
    with pytest.raises(ValueError) as info:
        losses.get("mse:my_loss")
    assert "('mse' has the implementations handwritten, naive, reference; a module of yours named mse.py is hidden by the loss family 'mse': rename it)" in str(info.value)


def test_an_edited_module_is_loaded_again(student_dir):
    module = student_dir / "lossbench_student_edited.py"
    module.write_text("def loss(z, y):\n    return z.sum() * 0 + 1.0\n")
    try:
        assert losses.get("lossbench_student_edited:loss")(torch.zeros(1), torch.zeros(1)).item() == 1.0
        assert losses.get("lossbench_student_edited:loss")(torch.zeros(1), torch.zeros(1)).item() == 1.0  # unchanged: the same
        module.write_text("def loss(z, y):\n    return z.sum() * 0 + 2.0  # edited\n")
        assert losses.get("lossbench_student_edited:loss")(torch.zeros(1), torch.zeros(1)).item() == 2.0
        module.write_text("def loss(z, y):\n    return (z\n")  # an edit that breaks it is reported, not hidden
        with pytest.raises(ValueError, match="failed to import: SyntaxError"):
            losses.get("lossbench_student_edited:loss")
    finally:
        sys.modules.pop("lossbench_student_edited", None)


def test_describe_has_one_line_per_family_with_head_implementations_and_options():
    lines = losses.describe()
    assert len(lines) == 4
    for line, family in zip(lines, losses.families()):
        assert "\n" not in line
        assert line.startswith(family.name + " ")
        assert family.head in line and family.summary in line
        assert "impl: " + ", ".join(family.implementations) in line
        assert "options: " + ", ".join(family.options) in line


WEIGHT_VALUES = (
    "Expected `weight` to hold finite class weights >= 0, not all zero "
    "(the weighted mean divides by the weights of the target classes), but got "
)
ALPHA = "Expected `alpha` to be a float in [0, 1] (the weight of the positive class), or None or a negative number for no alpha weighting, but got "
GAMMA = "Expected `gamma` to be a finite float >= 0 (0: plain cross-entropy), but got "
SMOOTHING = "Expected `label_smoothing` to be a float in [0, 1] (0: no smoothing), but got "
BAD_OPTIONS = [
    pytest.param("softmax_ce", {"label_smoothing": 1.5}, SMOOTHING + "1.5.", id="smoothing-above-1"),
    pytest.param("softmax_ce:reference", {"label_smoothing": -0.1}, SMOOTHING + "-0.1.", id="smoothing-negative-reference"),
    pytest.param("softmax_ce", {"label_smoothing": float("nan")}, SMOOTHING + "nan.", id="smoothing-nan"),
    pytest.param("softmax_ce", {"label_smoothing": "0.1"}, SMOOTHING + "'0.1'.", id="smoothing-string"),
    pytest.param("softmax_ce", {"weight": torch.tensor([-1.0, 1.0])}, WEIGHT_VALUES + "[-1.0, 1.0].", id="weight-negative"),
    pytest.param("softmax_ce:reference", {"weight": torch.zeros(2)}, WEIGHT_VALUES + "[0.0, 0.0].", id="weight-all-zero"),
    pytest.param("softmax_ce", {"weight": torch.tensor([float("nan"), 1.0])}, WEIGHT_VALUES + "[nan, 1.0].", id="weight-nan"),
    pytest.param("softmax_ce", {"weight": [1.0, 2.0]},
                 "Expected `weight` to be a floating-point tensor of shape (C,), one weight per class, but got [1.0, 2.0].", id="weight-list"),
    pytest.param("focal", {"gamma": "2"}, GAMMA + "'2'.", id="gamma-string"),
    pytest.param("focal", {"gamma": float("inf")}, GAMMA + "inf.", id="gamma-inf"),
    pytest.param("focal:reference", {"gamma": -1.0}, GAMMA + "-1.0.", id="gamma-negative-reference"),
    pytest.param("focal", {"gamma": True}, GAMMA + "True.", id="gamma-bool"),
    pytest.param("focal", {"alpha": float("nan")}, ALPHA + "nan.", id="alpha-nan"),
    pytest.param("focal", {"alpha": 1.5}, ALPHA + "1.5.", id="alpha-above-1"),
    pytest.param("focal", {"alpha": "0.25"}, ALPHA + "'0.25'.", id="alpha-string"),
    pytest.param("mse", {"on": "logit"},
                 "Expected `on` to be 'probability' (square sigmoid(output) - target, classification) or 'raw' "
                 "(square output - target, regression), but got 'logit'.", id="on-unknown"),
    pytest.param("bce", {"pos_weight": "4"}, "Expected `pos_weight` to be a float or a torch.Tensor, but got '4'.", id="pos-weight-string"),
    pytest.param("bce", {"reduction": "avg"}, "Expected `reduction` to be one of 'mean', 'sum', 'none', but got 'avg'.", id="reduction"),
]


@pytest.mark.parametrize("name, options, message", BAD_OPTIONS)
def test_get_checks_option_values_when_it_binds_them(name, options, message):
    with pytest.raises(ValueError) as info:
        losses.get(name, **options)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "name, options",
    [
        pytest.param("focal", {"alpha": np.float32(0.5), "gamma": np.float32(2)}, id="focal-numpy"),
        pytest.param("focal", {"alpha": -1.0, "gamma": 0}, id="focal-negative-alpha-means-none"),
        pytest.param("focal", {"alpha": None}, id="focal-no-alpha"),
        pytest.param("softmax_ce", {"label_smoothing": np.float64(0.1), "weight": torch.tensor([0.0, 2.0])}, id="softmax-numpy"),
        pytest.param("bce", {"pos_weight": np.float32(3)}, id="bce-numpy"),
        pytest.param("mse", {"on": "raw"}, id="mse-raw"),
    ],
)
def test_get_accepts_valid_option_values_numpy_scalars_included(name, options):
    loss = losses.get(name, **options)
    output = torch.tensor([[0.5, -1.0], [2.0, 0.0]]) if name == "softmax_ce" else torch.tensor([0.5, -1.0])
    target = torch.tensor([1, 1]) if name == "softmax_ce" else torch.tensor([1.0, 0.0])
    value = loss(output, target)
    assert isinstance(value, torch.Tensor) and torch.isfinite(value)
