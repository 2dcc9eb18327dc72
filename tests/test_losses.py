"""The CLIP loss equals L2(layer2) + L2(layer3) + 0.1·(1 − cos), computed directly through the ResNet's stages."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tiny_models import TinyModels

from clipasso_engine.loss_network import LossNetwork, load_loss_network
from clipasso_engine.losses import ClipLoss, clip_pair_losses, geometric_loss, semantic_loss
from clipasso_engine.normalize import clip_normalize


def direct_loss(visual: torch.nn.Module, sketch: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The method's loss for one pair, by calling the ModifiedResNet stages one after another."""

    def stages(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = visual.layer1(visual.stem(x))
        l2 = visual.layer2(h)
        l3 = visual.layer3(l2)
        return l2, l3, visual.attnpool(visual.layer4(l3))

    s2, s3, se = stages(sketch)
    t2, t3, te = stages(target)
    return F.mse_loss(s2, t2) + F.mse_loss(s3, t3) + 0.1 * (1 - F.cosine_similarity(se, te).mean())


def test_loss_matches_direct_computation(tiny_models: TinyModels) -> None:
    network = load_loss_network(tiny_models.settings(), torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    sketches = clip_normalize(torch.rand(3, 3, 224, 224, generator=generator))
    targets = clip_normalize(torch.rand(3, 3, 224, 224, generator=generator))
    ours = clip_pair_losses(network(sketches), network(targets))
    for k in range(3):
        expected = direct_loss(network.visual, sketches[k : k + 1], targets[k : k + 1])
        torch.testing.assert_close(ours[k], expected, rtol=1e-5, atol=1e-7)
    module = ClipLoss()(network(sketches), network(targets))
    torch.testing.assert_close(module, ours.mean())


def test_each_term_is_what_it_says() -> None:
    sketch = {
        "layer2": torch.ones(2, 4, 3, 3),
        "layer3": torch.zeros(2, 2, 2, 2),
        "embedding": torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
    }
    target = {
        "layer2": torch.zeros(1, 4, 3, 3),
        "layer3": torch.full((1, 2, 2, 2), 2.0),
        "embedding": torch.tensor([[1.0, 0.0]]),
    }
    geometric = geometric_loss(sketch, target, ("layer2", "layer3"), (1.0, 0.5))
    torch.testing.assert_close(geometric, torch.tensor([1.0 + 0.5 * 4.0, 1.0 + 0.5 * 4.0]))
    torch.testing.assert_close(semantic_loss(sketch["embedding"], target["embedding"]), torch.tensor([0.0, 1.0]))
    total = clip_pair_losses(sketch, target, ("layer2", "layer3"), (1.0, 0.5), semantic_weight=0.1)
    torch.testing.assert_close(total, torch.tensor([3.0, 3.1]))


def test_loss_network_finds_stages_by_name_and_passes_gradients_to_the_image(tiny_models: TinyModels) -> None:
    network = load_loss_network(tiny_models.settings(), torch.device("cpu"))
    assert isinstance(network, LossNetwork)
    assert all(not p.requires_grad for p in network.parameters())
    image = torch.rand(1, 3, 224, 224, requires_grad=True)
    features = network(clip_normalize(image))
    assert set(features) == {"layer2", "layer3", "embedding"}
    assert features["layer2"].shape[-1] == 28 and features["layer3"].shape[-1] == 14
    sum(v.sum() for v in features.values()).backward()
    assert image.grad is not None and torch.isfinite(image.grad).all() and image.grad.abs().sum() > 0
