"""Claims the README and the notebooks make: the README's table and what a default run shows, the half-rate
head under Adam (and without weight decay only), a loss's models that do not depend on which other losses share
the comparison, the gradient shares of softmax across labels and of sigmoid labels, and pos_weight's best score."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

import lossbench
from lossbench import report
from tests.conftest import tiny_task

README = Path(__file__).resolve().parents[1] / "README.md"
HISTORY_COLUMNS = ("train_loss", "val_loss", "val_accuracy", "val_auc", "grad_body", "grad_positive_share", "decision_weight_change")


def _readme_table() -> list[str]:
    """The lines of the table the README shows after its main command, without the closing '  ...'."""
    text = README.read_text()
    block = re.search(r"then prints a table like this one.*?```\n(.*?)```", text, re.S)
    assert block, "the README's example table was not found after its main command"
    lines = block.group(1).rstrip("\n").split("\n")
    assert lines[-1].strip() == "...", lines[-1]
    return lines[:-1]


def test_the_readme_table_is_what_the_default_titanic_comparison_prints():
    # the README says the run is deterministic and shows its numbers: a change to the defaults, the data
    # or the training step that moves them must update the README too
    result = lossbench.compare("titanic", device="cpu")
    printed = report.format_report(result).split("\n")
    shown = _readme_table()
    assert printed[: len(shown)] == shown
    # the README: w1 - w0 "about 1.6 times as far after Titanic's 100 epochs" as BCE's w
    moved = result.history[result.history.epoch == 100].pivot(index="seed", columns="loss", values="decision_weight_change")
    ratio = moved["softmax_ce"] / moved["bce"]
    assert "about 1.6 times as far after Titanic's 100 epochs" in " ".join(README.read_text().split())
    assert ratio.min() > 1.5 and ratio.max() < 1.7 and round(ratio.mean(), 1) == 1.6
    # the README: "the softmax model's body gradient grows apart from BCE's": equal at the matched start,
    # larger on every seed after 100 epochs
    body = result.history.pivot_table(index="seed", columns=["epoch", "loss"], values="grad_body")
    start, end = body[0], body[100]
    assert ((start["softmax_ce"] / start["bce"] - 1).abs() < 1e-5).all()
    assert (end["softmax_ce"] / end["bce"] > 1.2).all(), (end["softmax_ce"] / end["bce"]).to_dict()
    # the README's Speed section: a default comparison's training step runs from a CPU trace
    assert result.config["cpu_trace"].startswith("yes: "), result.config["cpu_trace"]


def test_the_quick_titanic_comparison_runs_from_a_cpu_trace():
    # the README: "every run of 100 full minibatches or more is traced ... a quick one (120)" is; the quick
    # run's 10 epochs of 12 full minibatches: the first step warms the trace up, the other 119 replay it
    result = lossbench.compare("titanic", quick=True, device="cpu", progress=False)
    assert "a quick one (120)" in " ".join(README.read_text().split())
    assert result.config["cpu_trace"] == "yes: 119 steps run from the trace"


def test_adam_at_half_the_head_lr_makes_softmax_ce_follow_bce_exactly():
    # notebook 4 and the README make this claim with Adam, the default optimizer (the runner's tests hold
    # it for SGD): each logit of the matched 2-logit head gets +-(p - y) h, the gradient the 1-logit head
    # gets, so Adam's per-element step is the same and w1 - w0 moves by two such steps, one at half the rate
    task = tiny_task("binary")
    kwargs = dict(seeds=2, epochs=5, batch_size=16, device="cpu", dtype="float64", optimizer="adam", lr=0.05)
    halved = lossbench.compare(task, ("softmax_ce", "bce"), overrides={"softmax_ce": {"head_lr_scale": 0.5}}, **kwargs)
    h = halved.history
    for column in HISTORY_COLUMNS:
        ce, bce = (h[h.loss == loss][column].to_numpy() for loss in ("softmax_ce", "bce"))
        np.testing.assert_allclose(ce, bce, atol=1e-12, rtol=0, equal_nan=True, err_msg=column)
    scores = halved.predictions["test_scores"]
    losses = halved.predictions["models_loss"]
    np.testing.assert_allclose(scores[losses == "softmax_ce"], scores[losses == "bce"], atol=1e-12, rtol=0)
    # at the full rate the two part: the test scores differ by far more than rounding
    full = lossbench.compare(task, ("softmax_ce", "bce"), **kwargs).predictions
    gap = np.abs(full["test_scores"][full["models_loss"] == "softmax_ce"] - full["test_scores"][full["models_loss"] == "bce"])
    assert gap.max() > 1e-3


def test_with_weight_decay_the_half_rate_softmax_model_parts_from_bce():
    # notebook 4: "No weight decay here: the halved rate would halve the head's decay steps too, and the two
    # models would part". Without decay the half-rate model is BCE's (the test above); with it, under either
    # optimizer, the test scores differ by far more than rounding
    task = tiny_task("binary")
    kwargs = dict(seeds=2, epochs=5, batch_size=16, device="cpu", dtype="float64", overrides={"softmax_ce": {"head_lr_scale": 0.5}})
    for optimizer, lr in (("adam", 0.05), ("sgd", 0.5)):
        for decay, apart in ((0.0, False), (0.1, True)):
            result = lossbench.compare(task, ("softmax_ce", "bce"), optimizer=optimizer, lr=lr, weight_decay=decay, **kwargs).predictions
            mine = result["models_loss"]
            gap = np.abs(result["test_scores"][mine == "softmax_ce"] - result["test_scores"][mine == "bce"]).max()
            assert (gap > 1e-4) if apart else (gap < 1e-10), (optimizer, decay, gap)


def test_a_loss_trains_the_same_models_whatever_losses_share_the_comparison():
    # notebook 4 pairs the double-sigmoid models with the BCE models of an earlier, separate comparison:
    # that is only right if a loss's models (weights, minibatches, every number recorded) depend on the
    # seed alone, not on which or how many other losses train beside them
    task = tiny_task("binary")
    kwargs = dict(seeds=3, epochs=3, batch_size=16, device="cpu", dtype="float64")
    alone = lossbench.compare(task, ("bce",), **kwargs)
    beside = lossbench.compare(task, ("softmax_ce", "mse", "bce", "focal"), **kwargs)
    a = alone.history.reset_index(drop=True)
    b = beside.history[beside.history.loss == "bce"].reset_index(drop=True)
    assert a[["seed", "epoch"]].equals(b[["seed", "epoch"]])
    # to rounding: a batched product over 3 models may round the last bit differently from one over 12
    for column in HISTORY_COLUMNS:
        np.testing.assert_allclose(a[column].to_numpy(), b[column].to_numpy(), atol=1e-12, rtol=0, err_msg=column)
    mine = beside.predictions["models_loss"] == "bce"
    np.testing.assert_allclose(alone.predictions["test_scores"], beside.predictions["test_scores"][mine], atol=1e-12, rtol=0)
    # and a different seed's models are different models: the comparison above has something to compare
    other = lossbench.compare(task, ("bce",), **dict(kwargs, seeds=[5, 6, 7])).predictions["test_scores"]
    assert np.abs(other - alone.predictions["test_scores"]).max() > 1e-3


def test_mses_push_on_a_mistake_peaks_at_confidence_two_thirds():
    # notebook 2 and the README: on a wrong prediction of confidence c, MSE's |dL/dz| is 2c^2(1 - c), which
    # rises from 0.25 at c = 1/2 to 8/27 at c = 2/3 and only then shrinks toward 0
    import torch

    from lossbench import losses

    c = torch.linspace(0.5, 0.999, 4991, dtype=torch.float64)
    z = torch.logit(c).requires_grad_()  # p = c for a label of 0: a mistake of confidence c
    (grad,) = torch.autograd.grad(losses.get("mse")(z, torch.zeros_like(c)) * len(c), z)  # the sum: one example's gradient each
    torch.testing.assert_close(grad.abs(), 2 * c**2 * (1 - c))
    assert abs(grad[0].item() - 0.25) < 1e-12
    peak = int(grad.abs().argmax())
    assert abs(c[peak].item() - 2 / 3) < 1e-3 and abs(grad.abs().max().item() - 8 / 27) < 1e-6
    assert grad.abs()[-1].item() < 0.002  # near 0 as c nears 1


def test_an_auc_under_half_is_a_ranking_that_training_made():
    # the table's note on a test AUC wholly under 0.5 says "a ranking that training made (chance gives 0.5)":
    # on the mammography grid the untrained heads rank at chance, and the first epochs, pushing every area's
    # score down, push the lesions' furthest
    result = lossbench.compare("mammography", config={"target": "grid"}, losses=("bce",), seeds=1, epochs=3, quick=True,
                               device="cpu", progress=False)
    auc = result.history.set_index("epoch")["val_auc"]
    assert abs(auc[0] - 0.5) < 0.05 and auc[3] < 0.3, auc.to_dict()


def test_softmax_across_labels_gives_the_present_labels_at_least_half_of_the_gradient():
    # notebook 3: with softmax across the labels and the target y / k, the present labels carry at least half of
    # sum |dL/dz| on every canvas, whatever the weights; exactly half when every present label scores below its
    # target 1/k, more once one overshoots it
    import torch

    from lossbench import gradients, losses
    from lossbench.models import Head

    torch.manual_seed(0)
    head = Head("two_logit", "multilabel", 10)
    seen = {"half": 0, "more": 0}
    for scale in (0.1, 1.0, 3.0, 10.0):
        for _ in range(50):
            y = torch.zeros(1, 10, dtype=torch.float64)
            y[0, torch.randperm(10)[: int(torch.randint(1, 5, ()))]] = 1.0  # 1 to 4 distinct labels present
            out = (scale * torch.randn(1, 1, 10, dtype=torch.float64)).requires_grad_()  # (models, canvases, labels)
            (d_out,) = torch.autograd.grad(losses.get("softmax_ce")(out[0], head.target(y)), out)
            h = torch.zeros(1, 1, 4, dtype=torch.float64)
            share = gradients.allocation(head, d_out, h, head.scores(out.detach()), y)["positive_share"].item()
            p, t = head.scores(out.detach())[0, 0], y[0] / y.sum()
            if (p[y[0] == 1] < t[y[0] == 1]).all():
                assert abs(share - 0.5) < 1e-12, share
                seen["half"] += 1
            else:
                assert share > 0.5 - 1e-12, share
                seen["more"] += share > 0.5 + 1e-6
    assert seen["half"] > 20 and seen["more"] > 20, seen  # both cases came up


def test_a_sigmoid_label_whose_bias_gradient_is_zero_gives_its_present_examples_half_of_its_gradient():
    # notebook 3's reason to expect the sigmoid heads near one half: each label's bias gradient is the sum of
    # that label's dL/dz, and where it is zero the present examples' pushes up cancel the absent ones' pushes
    # down, so each side carries half of the label's sum |dL/dz| (for BCE and for MSE on the sigmoid)
    import torch

    from lossbench import gradients, losses
    from lossbench.models import Head

    torch.manual_seed(1)
    n, k = 60, 4
    y = (torch.rand(n, k) < torch.tensor([0.1, 0.25, 0.5, 0.8])).double()  # sparse to dense labels
    z = 2 * torch.randn(n, k, dtype=torch.float64)
    head = Head("one_logit", "multilabel", k)
    for loss in ("bce", "mse"):
        fn = losses.get(loss)

        def dz(bias: torch.Tensor) -> torch.Tensor:
            out = (z + bias).unsqueeze(0).requires_grad_()  # (models, examples, labels)
            (grad,) = torch.autograd.grad(fn(out[0], y), out)
            return grad

        low, high = torch.full((k,), -10.0, dtype=torch.float64), torch.full((k,), 10.0, dtype=torch.float64)
        for _ in range(200):  # bisection, label by label, on the bias gradient sum_n dL/dz
            mid = (low + high) / 2
            positive = dz(mid)[0].sum(dim=0) > 0
            high, low = torch.where(positive, mid, high), torch.where(positive, low, mid)
        grad = dz((low + high) / 2)
        assert grad[0].sum(dim=0).abs().max() < 1e-12
        g = grad[0].abs()
        per_label = (g * y).sum(dim=0) / g.sum(dim=0)
        torch.testing.assert_close(per_label, torch.full((k,), 0.5, dtype=torch.float64))
        share = gradients.allocation(head, grad, torch.zeros(1, n, 3, dtype=torch.float64), head.scores((z + (low + high) / 2).unsqueeze(0)), y)
        assert abs(share["positive_share"].item() - 0.5) < 1e-9, (loss, share["positive_share"].item())
    # and with the biases anywhere else the share is not held at one half
    free = dz(torch.zeros(k, dtype=torch.float64))[0].abs()
    assert abs((free * y).sum().item() / free.sum().item() - 0.5) > 0.01


def test_pos_weight_moves_the_best_score_to_wq_over_wq_plus_1_minus_q_keeping_the_order():
    # notebook 4: with pos_weight w, the score that minimises the expected loss of an example that is positive
    # with probability q is p* = wq / (wq + 1 - q): order-preserving, and upward when w > 1
    import torch

    from lossbench import losses

    bce = losses.get("bce")
    q = torch.linspace(0.02, 0.98, 49, dtype=torch.float64)
    for w in (0.25, 1.0, 4.88):
        p_star = w * q / (w * q + 1 - q)
        z = torch.logit(p_star).requires_grad_()

        def expected(z: torch.Tensor) -> torch.Tensor:  # q of the loss at y = 1 plus (1 - q) of it at y = 0, summed over q
            ones, zeros = torch.ones_like(z), torch.zeros_like(z)
            per_one = bce(z, ones, pos_weight=w, reduction="none")
            per_zero = bce(z, zeros, pos_weight=w, reduction="none")
            return (q * per_one + (1 - q) * per_zero).sum()

        (grad,) = torch.autograd.grad(expected(z), z)
        assert grad.abs().max() < 1e-12, (w, grad.abs().max())  # a stationary point of a convex function: the minimum
        for shift in (-1e-3, 1e-3):
            assert (expected(z.detach() + shift) > expected(z.detach())).item()
        assert (p_star.diff() > 0).all()  # order-preserving
        assert (p_star > q).all() if w > 1 else (p_star < q).all() if w < 1 else torch.allclose(p_star, q)


def test_a_double_sigmoid_model_that_slides_to_zero_scores_stays_at_log_2():
    # notebook 4: normal patches always push z down, and once sigmoid(z) is near 0 the factor sigmoid'(z) silences
    # both pulls; the loss is then log 2 on every patch, above the 0.63 floor a minibatch could reach at best
    import math

    import torch
    import torch.nn.functional as F

    def double_sigmoid_bce(output, target):
        return F.binary_cross_entropy_with_logits(torch.sigmoid(output), target)

    z = torch.linspace(-8.0, 8.0, 161, dtype=torch.float64, requires_grad=True)
    double_sigmoid_bce(z, torch.zeros_like(z)).backward()
    assert (z.grad > 0).all()  # a normal patch pushes z down (gradient descent moves against the gradient) everywhere
    slid = torch.tensor([-20.0, -20.0], dtype=torch.float64, requires_grad=True)  # an abnormal and a normal patch
    loss = double_sigmoid_bce(slid, torch.tensor([1.0, 0.0], dtype=torch.float64))
    loss.backward()
    assert abs(loss.item() - math.log(2)) < 1e-8
    assert slid.grad.abs().max().item() < 1e-8  # both the abnormal patch's pull and the normal one's push are gone
