"""The library-call recorder: what it sees, under which name, and that it leaves no trace behind."""
from __future__ import annotations

import sys
import types

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.functional import cross_entropy as ce

from lossbench.exercises.forbidden import (
    AUTOGRAD_KERNELS,
    BCE_FUNCTIONS,
    BCE_KERNELS,
    MSE_KERNELS,
    SOFTMAX_CE_FUNCTIONS,
    SOFTMAX_CE_KERNELS,
    CallRecorder,
    Forbidden,
)

SOFTMAX = Forbidden(SOFTMAX_CE_FUNCTIONS, SOFTMAX_CE_KERNELS)
BCE = Forbidden(BCE_FUNCTIONS, BCE_KERNELS)
Z = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
Y = torch.tensor([0, 2, 1, 1])


def calls(rule: Forbidden, fn) -> list[str]:
    with CallRecorder(rule) as recorder:
        fn()
    return recorder.calls


def test_the_same_function_is_named_the_same_under_every_alias():
    for fn in (lambda: F.cross_entropy(Z, Y), lambda: ce(Z, Y), lambda: nn.CrossEntropyLoss()(Z, Y)):
        assert calls(SOFTMAX, fn) == ["torch.nn.functional.cross_entropy", "aten::_log_softmax",
                                      "aten::nll_loss_forward"]


def test_methods_and_namespaces_are_told_apart_by_name():
    assert calls(SOFTMAX, lambda: Z.log_softmax(1)) == ["torch.Tensor.log_softmax", "aten::_log_softmax"]
    assert calls(SOFTMAX, lambda: torch.log_softmax(Z, 1)) == ["torch.log_softmax", "aten::_log_softmax"]
    assert calls(SOFTMAX, lambda: torch.special.log_softmax(Z, 1)) == ["torch.special.log_softmax",
                                                                       "aten::_log_softmax"]


def test_the_kernel_recorder_sees_what_has_no_python_name():
    with CallRecorder(BCE) as recorder:
        torch.ops.aten.binary_cross_entropy_with_logits(Z, torch.ones_like(Z))
    assert recorder.calls == ["aten::binary_cross_entropy_with_logits"]
    assert recorder.readable == ["aten::binary_cross_entropy_with_logits"]  # no Python name to prefer


GRID_LOGITS = torch.randn(2, 3, 4, 4, dtype=torch.float64)  # per-pixel classes: (N, C, H, W)
GRID_TARGETS = torch.randint(0, 3, (2, 4, 4))
P = torch.rand(4, 3, dtype=torch.float64)
HOW_EACH_KERNEL_RUNS = {  # what a student's code does that reaches the kernel, without naming it
    "aten::_log_softmax": lambda: Z.log_softmax(1),
    "aten::nll_loss_forward": lambda: F.nll_loss(Z, Y),
    "aten::nll_loss2d_forward": lambda: F.nll_loss(GRID_LOGITS.log_softmax(1), GRID_TARGETS),
    "aten::binary_cross_entropy_with_logits": lambda: F.binary_cross_entropy_with_logits(Z, P),
    "aten::binary_cross_entropy": lambda: F.binary_cross_entropy(P, P),
    "aten::soft_margin_loss": lambda: F.soft_margin_loss(Z, 2 * P.round() - 1),
    "aten::mse_loss": lambda: F.mse_loss(Z, P),
    "aten::huber_loss": lambda: torch.ops.aten.huber_loss(Z, P),
    "aten::smooth_l1_loss": lambda: torch.ops.aten.smooth_l1_loss(Z, P),
    "aten::_softmax_backward_data": lambda: torch.autograd.grad(Z.softmax(1)[:, 0].sum(), Z),
    "aten::_log_softmax_backward_data": lambda: torch.autograd.grad(Z.log_softmax(1)[:, 0].sum(), Z),
    "aten::nll_loss_backward": lambda: torch.autograd.grad(F.nll_loss(Z, Y), Z),
}


@pytest.mark.parametrize("kernel", sorted(HOW_EACH_KERNEL_RUNS))
def test_every_forbidden_kernel_is_listed_and_recorded_when_it_runs(kernel):
    """Each kernel on its own in the rule, reached the way a student's code would reach it (backward ones through autograd)."""
    assert kernel in SOFTMAX_CE_KERNELS + BCE_KERNELS + MSE_KERNELS + AUTOGRAD_KERNELS
    assert kernel in calls(Forbidden(aten_ops=(kernel,)), HOW_EACH_KERNEL_RUNS[kernel])
    assert calls(Forbidden(aten_ops=(kernel,)), lambda: torch.sigmoid(Z).sum()) == []


def test_each_listed_kernel_has_a_way_to_run_above():
    assert set(SOFTMAX_CE_KERNELS + BCE_KERNELS + MSE_KERNELS + AUTOGRAD_KERNELS) == set(HOW_EACH_KERNEL_RUNS)


def test_readable_prefers_the_name_the_student_wrote():
    with CallRecorder(BCE) as recorder:
        F.binary_cross_entropy_with_logits(Z, torch.ones_like(Z))
    assert recorder.readable == ["torch.nn.functional.binary_cross_entropy_with_logits"]


def test_building_blocks_are_not_recorded():
    def blocks():
        lse = torch.logsumexp(Z, dim=1)
        F.logsigmoid(Z), F.softplus(Z), torch.softmax(Z, 1), torch.sigmoid(Z)
        (lse - Z.gather(1, Y.view(-1, 1)).squeeze(1)).mean().backward()

    assert calls(SOFTMAX, blocks) == []
    assert calls(BCE, blocks) == []


def test_functions_of_forbidden_modules_are_recorded_with_their_qualified_name():
    module = types.ModuleType("lossbench.losses.fake")
    exec("def helper(x):\n    return x * 2\ndef loss(x):\n    return helper(x).sum()\n", module.__dict__)
    rule = Forbidden(modules=("lossbench.losses",))
    assert calls(rule, lambda: module.loss(Z)) == ["lossbench.losses.fake.loss"]  # where it is entered, not its helpers
    assert calls(Forbidden(modules=("lossbench.thresholds",)), lambda: module.loss(Z)) == []


def test_calls_list_kernels_before_functions_of_forbidden_modules_and_readable_the_python_name():
    """`calls` is Python names, then kernels, then forbidden modules' functions; `readable` keeps the Python names."""
    module = types.ModuleType("lossbench.losses.fake_log_softmax")
    exec("import torch\ndef loss(x):\n    return torch.log_softmax(x, 1).sum()\n", module.__dict__)
    rule = Forbidden(aten_ops=("aten::_log_softmax",), modules=("lossbench.losses",))
    with CallRecorder(rule) as recorder:
        module.loss(Z)
    assert recorder.calls == ["aten::_log_softmax", "lossbench.losses.fake_log_softmax.loss"]
    assert recorder.readable == ["lossbench.losses.fake_log_softmax.loss"]


def test_the_previous_profiler_comes_back_after_the_block():
    seen = []

    def profiler(frame, event, arg):
        seen.append(event)

    sys.setprofile(profiler)
    try:
        with CallRecorder(Forbidden(modules=("lossbench.losses",))):
            pass
        assert sys.getprofile() is profiler
    finally:
        sys.setprofile(None)


def test_the_modes_are_gone_after_the_block_even_after_an_error():
    try:
        with CallRecorder(SOFTMAX):
            raise RuntimeError("student bug")
    except RuntimeError:
        pass
    with CallRecorder(Forbidden()) as outer:  # nothing is left recording outside the block
        F.cross_entropy(Z, Y)
    assert outer.calls == []
    assert not torch._C._is_torch_function_mode_enabled()


def test_names_missing_from_this_torch_are_skipped():
    rule = Forbidden(functions=("torch.nn.functional.no_such_loss", "torch.no_such_module.f"))
    assert calls(rule, lambda: F.cross_entropy(Z, Y)) == []
    assert not Forbidden() and rule


def test_an_import_inside_the_function_is_not_a_call_and_calling_the_registry_names_only_what_was_called():
    def imports_only():
        import lossbench.losses.focal  # noqa: F401 - the module's code runs (if not yet imported), nothing is called

        return F.logsigmoid(Z)

    def via_registry():
        import lossbench.losses

        return lossbench.losses.get("bce")(Z[:, 0], Y.double().clamp(max=1))

    rule = Forbidden(modules=("lossbench.losses",))
    kept = sys.modules.pop("lossbench.losses.focal", None)  # so that the import runs the module's code
    try:
        assert calls(rule, imports_only) == []
    finally:
        if kept is not None:
            sys.modules["lossbench.losses.focal"] = kept
    assert calls(rule, via_registry) == ["lossbench.losses.registry.get", "lossbench.losses.bce.binary_cross_entropy_with_logits"]


def test_a_call_from_another_thread_is_not_seen_as_the_module_docstring_says():
    # the guard's documented limit: its modes and profiler listen on the calling thread only
    import threading

    rule = Forbidden(functions=("torch.nn.functional.cross_entropy",), aten_ops=("aten::_log_softmax",))
    z, y = torch.zeros(2, 3), torch.tensor([0, 2])

    def in_a_thread():
        worker = threading.Thread(target=F.cross_entropy, args=(z, y))
        worker.start()
        worker.join()

    assert calls(rule, lambda: F.cross_entropy(z, y)) == ["torch.nn.functional.cross_entropy", "aten::_log_softmax"]
    assert calls(rule, in_a_thread) == []
