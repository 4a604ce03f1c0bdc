"""Finer rules of the library-call recorder: what it records, under which name, and what it leaves behind."""
from __future__ import annotations

import sys
import types

import pytest
import torch
import torch.nn.functional as F

from lossbench.exercises import forbidden
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


def calls(rule: Forbidden, fn) -> list[str]:
    with CallRecorder(rule) as recorder:
        fn()
    return recorder.calls


def _fake_module(name: str, source: str) -> types.ModuleType:
    """A module named `name` that has run `source` (not in sys.modules: nothing imports it by name)."""
    module = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


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


def test_where_torch_does_not_hand_autograd_backward_to_the_mode_the_profile_hook_records_it(monkeypatch):
    # torch 2.2 and 2.3 call torch.autograd.backward without __torch_function__: the function recorder never saw it
    monkeypatch.setattr(forbidden, "_modes_see_autograd_backward", lambda: False)
    rule = Forbidden(functions=AUTOGRAD_FUNCTIONS)
    assert calls(rule, HOW_EACH_FUNCTION_RUNS["torch.autograd.backward"]) == ["torch.autograd.backward"]
    assert calls(rule, HOW_EACH_FUNCTION_RUNS["torch.Tensor.backward"]) == ["torch.Tensor.backward"]  # not torch's own call
    assert calls(rule, lambda: torch.autograd.grad((Z * 2).sum(), Z)) == ["torch.autograd.grad"]
    assert calls(rule, lambda: torch.logsumexp(Z, 1).sum()) == []

    def profiler(frame, event, arg):
        pass

    sys.setprofile(profiler)  # the hook is set for the block only, then the one before it is back
    try:
        with CallRecorder(rule):
            assert sys.getprofile() is not profiler
        assert sys.getprofile() is profiler
    finally:
        sys.setprofile(None)


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
