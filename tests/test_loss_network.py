"""The loss network: stages and embedding against open_clip's own model, BatchNorm folding, and use from threads."""

from __future__ import annotations

import threading

import pytest
import torch
from tiny_models import LOSS_ARCH, TinyModels, make_clip

from clipasso_engine.errors import ModelConfigError
from clipasso_engine.loss_network import LossNetwork, fold_batch_norms, load_loss_network
from clipasso_engine.towers import load_clip_visual

CPU = torch.device("cpu")


def _visual(tiny_models: TinyModels) -> torch.nn.Module:
    return load_clip_visual(
        LOSS_ARCH, str(tiny_models.loss_weights), device=CPU, model_config=str(tiny_models.model_config)
    )


def _reference_stages(tiny_models: TinyModels, images: torch.Tensor, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Stages and embedding of the model the tiny checkpoint was saved from, through open_clip's own forward."""
    reference = make_clip(LOSS_ARCH, tiny_models.model_config, seed=1).visual
    captured: dict[str, torch.Tensor] = {}
    for name in names:
        getattr(reference, name).register_forward_hook(lambda _m, _i, out, name=name: captured.__setitem__(name, out))
    with torch.no_grad():
        captured["embedding"] = reference(images)
    return captured


def test_loss_network_stages_embedding_and_gradients(tiny_models: TinyModels) -> None:
    network = load_loss_network(tiny_models.settings(), CPU)
    images = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0), requires_grad=True)
    out = network(images)
    assert set(out) == {"layer2", "layer3", "embedding"}
    assert out["layer2"].shape == (2, 64, 28, 28)
    assert out["layer3"].shape == (2, 128, 14, 14)
    assert out["embedding"].shape == (2, 32)
    # Against an independent path: the unfolded open_clip model the checkpoint came from, its stages caught by
    # hooks and its embedding from its own forward (the network under test runs neither).
    expected = _reference_stages(tiny_models, images.detach(), ("layer2", "layer3"))
    for name, value in expected.items():
        torch.testing.assert_close(out[name].detach(), value, rtol=1e-4, atol=1e-5)
    (out["layer2"].square().mean() + out["layer3"].square().mean() + out["embedding"].sum()).backward()
    assert images.grad is not None and torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0
    assert all(p.grad is None for p in network.parameters())


def test_loss_network_residual_branches_are_live(tiny_models: TinyModels) -> None:
    # Spec §10: with open_clip's zero bn3 scales the bottleneck branches would output exactly 0.
    visual = _visual(tiny_models)
    scales = [p for name, p in visual.named_parameters() if name.startswith("layer") and name.endswith("bn3.weight")]
    assert len(scales) == 4 and all(p.abs().min() > 0 for p in scales)


def test_folding_batch_norms_keeps_the_function_and_its_gradient(tiny_models: TinyModels) -> None:
    plain, fast = LossNetwork(_visual(tiny_models), optimise=False), LossNetwork(_visual(tiny_models))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    images = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    a, b = images.clone().requires_grad_(True), images.clone().requires_grad_(True)
    out_a, out_b = plain(a), fast(b)
    for name in out_a:
        torch.testing.assert_close(out_b[name], out_a[name], rtol=1e-4, atol=1e-5)
    sum(v.sum() for v in out_a.values()).backward()
    sum(v.sum() for v in out_b.values()).backward()
    assert a.grad is not None and b.grad is not None
    # Rounding differs between the folded and the plain convolutions: typically 1e-6 of the gradient's norm, but
    # where it flips a ReLU input across zero up to ~3e-3 (measured over 8 random inputs). A wrong fold is O(1).
    assert float((b.grad - a.grad).norm()) < 1e-2 * float(a.grad.norm())


def test_folding_counts_every_pair_and_leaves_training_norms(tiny_models: TinyModels) -> None:
    # Tiny ResNet [1, 1, 1, 1]: 3 stem pairs, 3 per bottleneck, 1 per downsample branch (all four have one).
    assert fold_batch_norms(_visual(tiny_models)) == 3 + 4 * 3 + 4
    training = _visual(tiny_models).train()
    assert fold_batch_norms(training) == 0  # a training BatchNorm is not an affine map: nothing is folded


def test_loss_network_stages_are_found_by_name(tiny_models: TinyModels) -> None:
    visual = _visual(tiny_models)
    assert LossNetwork(visual, ("layer1", "layer4"))(torch.zeros(1, 3, 224, 224))["layer4"].shape == (1, 256, 7, 7)
    with pytest.raises(ModelConfigError, match="no stage named layer9"):
        LossNetwork(visual, ("layer2", "layer9"))
    with pytest.raises(ModelConfigError, match="must be an open_clip ResNet"):
        LossNetwork(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1)), ("layer2",))


def test_two_threads_share_one_network_and_each_gets_its_own_activations(tiny_models: TinyModels) -> None:
    """Issue 8 item 14: the hooks wrote into shared state, so concurrent calls swapped each other's stages."""
    network = load_loss_network(tiny_models.settings(), CPU)
    images = [torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(seed)) for seed in (1, 2)]
    with torch.no_grad():
        expected = [network(batch) for batch in images]
    results: list[list[dict[str, torch.Tensor]]] = [[], []]
    start = threading.Barrier(2)

    def work(index: int) -> None:
        start.wait()
        with torch.no_grad():
            for _ in range(12):
                results[index].append(network(images[index]))

    threads = [threading.Thread(target=work, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(len(runs) == 12 for runs in results)
    for index, runs in enumerate(results):
        for out in runs:
            assert set(out) == {"layer2", "layer3", "embedding"}
            for name, value in out.items():
                assert torch.equal(value, expected[index][name]), (index, name)
