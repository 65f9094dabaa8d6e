"""Loss terms on hand-computed tensors, the gradient reversal, the discriminator, output shapes."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from discomkd.config import LossWeights
from discomkd.model.losses import (
    discomkd_loss_terms,
    grl_factor,
    modality_targets,
    orthogonality_penalty,
    weighted_total,
)
from discomkd.model.networks import CNN1D, CompactCNN, DisCoMKD, gradient_reversal, resolve_backbone


def test_orthogonality_penalty_by_hand():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    b = torch.tensor([[0.0, 2.0], [-1.0, -1.0]])  # cosines: 0 and -1
    assert orthogonality_penalty(a, b, "abs").item() == pytest.approx(0.5)
    assert orthogonality_penalty(a, b, "square").item() == pytest.approx(0.5)
    assert orthogonality_penalty(a, b, "signed").item() == pytest.approx(-0.5)


def _outputs(logit_value: float, n_classes: int = 3, n_modalities: int = 2, batch: int = 2) -> dict:
    """Outputs whose every logit row is [v, 0, 0, ...]: cross-entropy is known in closed form."""
    row = lambda n: torch.tensor([[logit_value] + [0.0] * (n - 1)] * batch)  # noqa: E731
    z = torch.tensor([[1.0, 0.0]] * batch)
    z_orth = torch.tensor([[0.0, 1.0]] * batch)
    return {
        "logits": row(n_classes), "aux_inv": row(n_classes), "aux_inf": row(n_classes),
        "disc": row(n_modalities), "mod_inf": row(n_modalities), "mod_irr": row(n_modalities),
        "z_inf": z, "z_irr": z_orth, "z_inv": z.clone(),  # cos(inf, irr) = 0, cos(inf, inv) = 1
    }


def test_loss_terms_by_hand_with_integer_modality_targets():
    v = 2.0
    outputs = {"a": _outputs(v), "b": _outputs(v)}
    labels = {"a": torch.tensor([0, 1]), "b": torch.tensor([0, 0])}
    terms = discomkd_loss_terms(outputs, labels, ["a", "b"], "abs")

    def ce(true_is_first: bool, n: int) -> float:
        logsumexp = math.log(math.exp(v) + (n - 1))
        return logsumexp - (v if true_is_first else 0.0)

    cl_a = (ce(True, 3) + ce(False, 3)) / 2
    cl_b = ce(True, 3)
    assert terms["cl"].item() == pytest.approx((cl_a + cl_b) / 2, rel=1e-5)
    assert terms["aux"].item() == pytest.approx(2 * (cl_a + cl_b) / 2, rel=1e-5)
    # modality a is index 0 (the large logit), b is index 1
    adv = (ce(True, 2) + ce(False, 2)) / 2
    assert terms["adv"].item() == pytest.approx(adv, rel=1e-5)
    assert terms["mod"].item() == pytest.approx(2 * adv, rel=1e-5)
    assert terms["perp"].item() == pytest.approx(0.0 + 1.0, rel=1e-5)
    total = weighted_total(terms, LossWeights(cl=1, aux=0.5, adv=0, mod=2, perp=3))
    expected = terms["cl"] + 0.5 * terms["aux"] + 2 * terms["mod"] + 3 * terms["perp"]
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)


def test_modality_targets_are_class_indices_not_one_hot_floats():
    targets = modality_targets(4, 2, "cpu")
    assert targets.dtype == torch.long and targets.tolist() == [2, 2, 2, 2]
    logits = torch.tensor([[0.0, 0.0, 5.0]] * 4)
    assert F.cross_entropy(logits, targets).item() < 0.02  # a confident correct guess costs ~0


def test_gradient_reversal_flips_and_scales_the_gradient():
    x = torch.ones(3, requires_grad=True)
    (gradient_reversal(x, 0.5) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert x.grad.tolist() == [-0.5, -1.0, -1.5]
    y = torch.ones(2, requires_grad=True)
    assert gradient_reversal(y, 1.0).tolist() == [1.0, 1.0]  # identity forward


def test_dann_ramp_goes_from_zero_to_lambda():
    assert grl_factor("dann", 1.0, 0.0) == pytest.approx(0.0)
    assert grl_factor("dann", 2.0, 1.0) == pytest.approx(2.0, abs=1e-3)
    assert grl_factor("constant", 0.7, 0.3) == 0.7


def _two_modalities(batch: int, seed: int) -> dict[str, torch.Tensor]:
    """Flat grey images against noise. Each branch's projection ends in its own BatchNorm, which
    removes first-moment differences between modalities, so the difference must be one of shape."""
    g = torch.Generator().manual_seed(seed)
    return {
        "flat": torch.rand(batch, 1, 1, 1, generator=g).expand(batch, 1, 12, 12).contiguous(),
        "noise": torch.rand(batch, 1, 12, 12, generator=g),
    }


def _discriminator_accuracy(grl: float, steps: int = 80) -> float:
    torch.manual_seed(0)
    names = ["flat", "noise"]
    model = DisCoMKD(names, {n: (1, 12, 12) for n in names}, {n: "compact" for n in names}, 8, 3)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    only_adv = LossWeights(cl=0, aux=0, adv=1, mod=0, perp=0)
    labels = {n: torch.zeros(32, dtype=torch.long) for n in names}
    for step in range(steps):
        outputs = model(_two_modalities(32, step), grl_factor=grl)
        loss = weighted_total(discomkd_loss_terms(outputs, labels, names), only_adv)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        outputs = model(_two_modalities(128, 999), grl_factor=grl)
    correct = sum((outputs[n]["disc"].argmax(1) == i).float().mean().item() for i, n in enumerate(names))
    return correct / 2


def test_discriminator_learns_to_tell_modalities_apart_with_grl_factor_zero():
    # Factor 0: the encoders get no gradient from L_adv and only the discriminator learns. With
    # integer modality targets it must learn to separate the modalities (chance is 0.5).
    assert _discriminator_accuracy(grl=0.0) > 0.85


def test_authors_float_targets_carry_no_modality_signal():
    # The authors' code: ones_like / zeros_like targets, read by CrossEntropyLoss as probabilities.
    confident = torch.tensor([[5.0, -5.0]])
    undecided = torch.zeros(1, 2)
    # zeros_like: the loss is 0 whatever the logits, so that modality teaches nothing.
    assert F.cross_entropy(confident, torch.zeros_like(confident)) == 0
    assert F.cross_entropy(undecided, torch.zeros_like(undecided)) == 0
    # ones_like: lowest when the discriminator is undecided, so it is pushed not to tell modalities apart.
    assert F.cross_entropy(undecided, torch.ones_like(undecided)) < F.cross_entropy(confident, torch.ones_like(confident))


@pytest.mark.parametrize("n_modalities", [2, 3])
def test_output_shapes_for_two_and_three_modalities(n_modalities):
    names = ["rgb", "depth", "imu"][:n_modalities]
    shapes = {"rgb": (3, 32, 32), "depth": (1, 64, 48), "imu": (6, 100)}
    backbones = {"rgb": "compact", "depth": "resnet18", "imu": "cnn1d"}
    model = DisCoMKD(names, shapes, backbones, embed_dim=16, n_classes=5)
    outputs = model({n: torch.randn(4, *shapes[n]) for n in names})
    for n in names:
        out = outputs[n]
        assert out["logits"].shape == (4, 5)
        assert out["z_inv"].shape == out["z_inf"].shape == out["z_irr"].shape == (4, 16)
        assert out["aux_inv"].shape == out["aux_inf"].shape == (4, 5)
        assert out["disc"].shape == out["mod_inf"].shape == out["mod_irr"].shape == (4, n_modalities)


def test_agreement_teaches_only_with_predictions_the_peer_gets_right():
    from discomkd.model.losses import agreement_loss, mimicry

    labels = {"strong": torch.tensor([0, 1]), "weak": torch.tensor([0, 1])}
    strong = torch.tensor([[3.0, 0.0], [0.0, 3.0]])  # right on both samples
    weak = torch.tensor([[0.0, 1.0], [0.0, 1.0]], requires_grad=True)  # wrong on sample 0
    loss = agreement_loss({"strong": strong.clone().requires_grad_(), "weak": weak}, labels, True, 2)
    # weak mimics strong on both samples; strong mimics weak on sample 1 only (weak is right there)
    expected = 0.5 * (mimicry(weak, torch.softmax(strong, 1))
                      + mimicry(strong, torch.softmax(weak.detach(), 1), torch.tensor([False, True])))
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    loss.backward()
    assert weak.grad.abs().sum() > 0  # the weak classifier is pulled towards the strong one


def test_unpaired_agreement_uses_class_means_of_correct_peer_predictions():
    from discomkd.model.losses import agreement_loss, class_conditional_targets, mimicry

    a = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])  # sample 1 (label 1) is wrong
    labels = {"a": torch.tensor([0, 1]), "b": torch.tensor([0, 1, 1])}
    loss = agreement_loss({"a": a, "b": b}, labels, False, 2)
    keep_b, keep_a = torch.tensor([True, False, True]), torch.tensor([True, True])
    t_ab, m_ab = class_conditional_targets(b[keep_b], labels["b"][keep_b], labels["a"], 2)
    t_ba, m_ba = class_conditional_targets(a[keep_a], labels["a"][keep_a], labels["b"], 2)
    expected = 0.5 * (mimicry(a, t_ab, m_ab) + mimicry(b, t_ba, m_ba))
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)


def test_extra_terms_ramp_in_and_the_paper_objective_does_not_ramp():
    from discomkd.config import LossWeights
    from discomkd.model.losses import ramp_factor

    assert ramp_factor(0.0, 0.3) == 0.0
    assert 0.0 < ramp_factor(0.1, 0.3) < ramp_factor(0.2, 0.3) < 1.0
    assert ramp_factor(0.3, 0.3) == pytest.approx(1.0, abs=1e-4) and ramp_factor(0.9, 0.3) == pytest.approx(1.0, abs=1e-4)
    assert ramp_factor(0.0, 0.0) == 1.0  # no ramp: full weight from the first step
    terms = {k: torch.tensor(1.0) for k in LossWeights.TERMS}
    w = LossWeights(cl=1.0, aux=2.0, adv=3.0, mod=4.0, perp=5.0, agree=6.0, unlabelled=7.0)
    # cl, agree and unlabelled never ramp
    assert float(weighted_total(terms, w, ramp=0.0)) == pytest.approx(1.0 + 6.0 + 7.0)
    assert float(weighted_total(terms, w, ramp=0.5)) == pytest.approx(14.0 + 0.5 * 14.0)


def test_agreement_temperature_softens_both_sides_and_scales_by_its_square():
    from discomkd.model.losses import agreement_loss, mimicry

    labels = {"a": torch.tensor([0, 1]), "b": torch.tensor([0, 1])}
    a = torch.tensor([[4.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[6.0, 1.0], [1.0, 3.0]])
    t = 3.0
    expected = 0.5 * t * t * (mimicry(a / t, torch.softmax(b / t, 1)) + mimicry(b / t, torch.softmax(a / t, 1)))
    assert float(agreement_loss({"a": a, "b": b}, labels, True, 2, temperature=t)) == pytest.approx(float(expected))
    assert float(agreement_loss({"a": a, "b": b}, labels, True, 2, temperature=1.0)) < float(expected)



@pytest.mark.parametrize("encoder, shape", [(CompactCNN, (1, 28, 28)), (CompactCNN, (3, 13, 13)), (CNN1D, (6, 37))])
def test_relu_after_the_pooling_computes_what_relu_before_it_did(encoder, shape):
    # The encoders pool before their ReLU (a quarter of the elements, issue 18); since max and ReLU
    # commute, outputs and gradients must equal the textbook order's to the bit, odd sizes included.
    torch.manual_seed(0)
    model = encoder(shape[0], 16)
    textbook = copy.deepcopy(model)
    for block in list(textbook.features)[:3]:
        pool, relu = block[2], block[3]
        assert isinstance(relu, torch.nn.ReLU)
        block[2], block[3] = relu, pool
    x = torch.randn(8, *shape)
    outputs, grads = [], []
    for net in (model, textbook):
        out = net(x)
        out.square().sum().backward()
        outputs.append(out)
        grads.append([p.grad for p in net.parameters()])
    assert torch.equal(outputs[0], outputs[1])
    for ours, theirs in zip(*grads):
        assert torch.equal(ours, theirs)
    assert model.state_dict().keys() == textbook.state_dict().keys()  # saved models load as before


def test_new_runs_pool_first_on_images_of_16_px_and_more_and_keep_batch_norm_first_below():
    assert resolve_backbone("auto", "image", "cpu", (1, 28, 28)) == "compact-pool-first"
    assert resolve_backbone("compact", "image", "cuda", (3, 64, 16)) == "compact-pool-first"
    assert resolve_backbone("auto", "image", "cpu", (1, 7, 7)) == "compact"  # the paired digits' weak sensor
    assert resolve_backbone("compact", "image", "cpu", (13, 15, 64)) == "compact"
    assert resolve_backbone("auto", "image", "cuda", (1, 7, 7)) == "resnet18"
    assert resolve_backbone("auto", "signal", "cpu", (6, 100)) == "cnn1d"
