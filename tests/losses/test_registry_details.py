"""Details of the loss registry that the other tests leave open: name lookup, dispatch to a family, a user's options, reloads."""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from lossbench.losses import bce, focal, mse, registry, softmax_ce

TABLE = {
    "softmax_ce": (softmax_ce.cross_entropy, softmax_ce.cross_entropy_naive, softmax_ce.cross_entropy_reference),
    "bce": (bce.binary_cross_entropy_with_logits, bce.binary_cross_entropy_naive, bce.binary_cross_entropy_reference),
    "mse": (mse.mse, mse.mse_naive, mse.mse_reference),
    "focal": (focal.focal_loss, focal.focal_loss_naive, focal.focal_loss_reference),
}


@pytest.mark.parametrize("name", list(TABLE))
def test_every_family_implementation_name_maps_to_its_own_function(name):
    # rule: "family:implementation" is that family module's function of that implementation, never another's
    for impl, fn in zip(("handwritten", "naive", "reference"), TABLE[name]):
        assert registry.get(f"{name}:{impl}") is fn


def test_focal_grad_wrt_logit_is_the_autograd_gradient_of_torchvisions_formula():
    # rule: focal's dL/dz is the derivative of alpha_t * bce(z, y) * (1 - p_t)^gamma, not bce's p - y
    z = torch.linspace(-4, 4, 9, dtype=torch.float64, requires_grad=True)
    for y, options in ((1.0, {}), (0.0, {}), (1.0, dict(alpha=0.6, gamma=1.5))):
        alpha, gamma = options.get("alpha", 0.25), options.get("gamma", 2.0)
        t = torch.full_like(z, y)
        p = torch.sigmoid(z)
        p_t = p * t + (1 - p) * (1 - t)
        loss = (alpha * t + (1 - alpha) * (1 - t)) * F.binary_cross_entropy_with_logits(z, t, reduction="none") * (1 - p_t) ** gamma
        (expected,) = torch.autograd.grad(loss.sum(), z)
        got = registry.family("focal").grad_wrt_logit(p.detach(), y, **options)
        torch.testing.assert_close(got, expected, atol=1e-12, rtol=1e-10)


def _write(path, text):
    path.write_text(text)


def test_a_users_loss_with_keyword_only_or_var_keyword_options_takes_them(tmp_path, monkeypatch):
    # rule: a user's function accepts its keyword-only parameters as options, and any option through **kwargs
    _write(tmp_path / "kw_losses.py", "def scaled(output, target, *, scale=1.0):\n    return scale * (output - target).square().mean()\n"
           "def anything(output, target, **kwargs):\n    return kwargs['scale'] * (output - target).square().mean()\n")
    monkeypatch.chdir(tmp_path)
    z, y = torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0])  # mean squared error (1 + 4) / 2 = 2.5
    assert registry.accepted_options(registry.load_user_function("kw_losses:scaled")) == ("scale",)
    assert registry.get("kw_losses:scaled", scale=2.0)(z, y).item() == 5.0
    assert registry.get("kw_losses:anything", scale=3.0)(z, y).item() == 7.5


def _stamp_test(tmp_path, monkeypatch, module, first, second, keep_mtime):
    path = tmp_path / f"{module}.py"
    _write(path, first)
    monkeypatch.chdir(tmp_path)
    assert registry.load_user_function(f"{module}:f")() == 1.0
    before = os.stat(path)
    _write(path, second)
    if keep_mtime:  # a coarse clock: the edit leaves the modification time as it was
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    else:  # the edit is seen as a later modification time
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 5_000_000_000))
    assert registry.load_user_function(f"{module}:f")() == 2.0


def test_an_edit_of_the_same_size_is_reloaded(tmp_path, monkeypatch):
    # rule: a module is reloaded when its file's modification time changed, even if its size did not
    _stamp_test(tmp_path, monkeypatch, "same_size_edit", "def f():\n    return 1.0\n", "def f():\n    return 2.0\n", keep_mtime=False)


def test_an_edit_within_the_same_modification_time_is_reloaded(tmp_path, monkeypatch):
    # rule: a module is reloaded when its file's size changed, even if its modification time did not
    _stamp_test(tmp_path, monkeypatch, "same_mtime_edit", "def f():\n    return 1.0\n", "def f():\n    return 1.0 + 1.0\n", keep_mtime=True)


def test_a_windows_path_without_py_is_named_as_a_module(tmp_path, monkeypatch):
    # rule: a backslash marks a file path too, and the error names the module to write instead
    monkeypatch.chdir(tmp_path)
    assert registry.module_of_path("hw\\week3") == "hw.week3"
    with pytest.raises(registry.LossNameError) as err:
        registry.load_user_function("hw\\week3:my_loss")
    assert "'hw.week3:my_loss'" in err.value.detail


def test_a_module_written_after_a_failed_lookup_is_found(tmp_path, monkeypatch):
    # rule: the import caches are invalidated, so a file written since the last import is seen
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # the folder stays on the path, with its finder's cached listing
    with pytest.raises(registry.LossNameError):
        registry.load_user_function("written_late:f")
    before = os.stat(tmp_path)
    _write(tmp_path / "written_late.py", "def f():\n    return 1.0\n")
    os.utime(tmp_path, ns=(before.st_atime_ns, before.st_mtime_ns))  # a coarse clock: the folder looks unchanged
    assert registry.load_user_function("written_late:f")() == 1.0
