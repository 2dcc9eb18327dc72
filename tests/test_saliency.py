"""Saliency: XDoG and Otsu against scipy/skimage, attention maps against independent recomputations, probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from skimage.color import rgb2gray
from skimage.filters import threshold_otsu
from tiny_models import SALIENCY_ARCH, TinyModels, make_dino

from clipasso_engine.models import clip_normalize, imagenet_normalize, load_clip_visual, load_dino
from clipasso_engine.saliency import (
    _gaussian_filter,
    clip_attention_map,
    dino_attention_map,
    otsu_threshold,
    saliency_probabilities,
    sampling_probabilities,
    xdog,
)

CPU = torch.device("cpu")


def synthetic_photo(size: int = 224) -> torch.Tensor:
    """A grey-gradient background with a dark disc, a bright square and a thin line: (3, size, size) in [0, 1]."""
    y, x = torch.meshgrid(
        torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij"
    )
    image = (0.4 + 0.4 * x / size).expand(3, size, size).clone()
    disc = (x - 80) ** 2 + (y - 90) ** 2 < 40**2
    image[:, disc] = torch.tensor([0.15, 0.1, 0.3], dtype=torch.float64)[:, None]
    image[:, 130:190, 120:200] = torch.tensor([0.95, 0.9, 0.6], dtype=torch.float64)[:, None, None]
    image[:, 30:33, 20:210] = 0.05
    noise = torch.Generator().manual_seed(0)
    return (image + 0.02 * torch.randn(image.shape, generator=noise, dtype=torch.float64)).clamp(0, 1)


def reference_xdog(normalised: np.ndarray) -> np.ndarray:
    """Spec §3.2 written with the reference's libraries; ``normalised`` is (H, W, 3)."""
    gray = rgb2gray(normalised)
    dog = gaussian_filter(gray, 0.8, mode="reflect", truncate=4.0) - 0.98 * gaussian_filter(
        gray, 8.0, mode="reflect", truncate=4.0
    )
    value = np.where(dog < -0.1, 1.0, 1.0 + np.tanh(200.0 * dog))
    value = (value - value.min()) / (value.max() - value.min())
    return (value >= threshold_otsu(value, nbins=256)).astype(np.float64)


@pytest.mark.parametrize(("shape", "sigma"), [((224, 224), 0.8), ((224, 224), 8.0), ((12, 9), 8.0)])
def test_gaussian_filter_matches_scipy_reflect(shape: tuple[int, int], sigma: float) -> None:
    # The 12×9 case has a kernel radius (32) wider than the image: reflection must fold more than once.
    image = torch.rand(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = gaussian_filter(image.numpy(), sigma, mode="reflect", truncate=4.0)
    assert np.allclose(_gaussian_filter(image, sigma).numpy(), expected, atol=1e-12)


def test_otsu_matches_skimage() -> None:
    generator = torch.Generator().manual_seed(2)
    bimodal = torch.cat([0.2 + 0.05 * torch.randn(3000, generator=generator), 0.7 + 0.1 * torch.randn(1000)])
    for values in (bimodal.double(), torch.rand(50, 40, generator=generator, dtype=torch.float64)):
        assert otsu_threshold(values).item() == pytest.approx(threshold_otsu(values.numpy(), nbins=256), abs=1e-12)
    assert otsu_threshold(torch.full((5, 5), 0.3)).item() == pytest.approx(0.3)


def test_xdog_matches_the_reference_on_a_synthetic_photo() -> None:
    normalised = clip_normalize(synthetic_photo()[None])[0]
    edges = xdog(normalised)
    expected = reference_xdog(normalised.permute(1, 2, 0).numpy())
    assert edges.shape == (224, 224)
    assert set(edges.unique().tolist()) <= {0.0, 1.0}
    assert np.array_equal(edges.double().numpy(), expected)
    # As spec §3.2 describes: (1 - edges) keeps the dark disc and the dark line, drops the bright square.
    y, x = torch.meshgrid(torch.arange(224), torch.arange(224), indexing="ij")
    keep = 1 - edges
    assert keep[(x - 80) ** 2 + (y - 90) ** 2 < 30**2].mean() > 0.9
    assert keep[31, 30:200].mean() > 0.9
    assert keep[135:185, 125:195].mean() < 0.1


def test_xdog_keeps_input_dtype_and_device() -> None:
    edges = xdog(clip_normalize(synthetic_photo().float()[None])[0])
    assert edges.dtype == torch.float32 and edges.device == CPU


def test_clip_attention_map_matches_a_manual_recomputation(tiny_models: TinyModels) -> None:
    visual = load_clip_visual(
        SALIENCY_ARCH, str(tiny_models.saliency_weights), device=CPU, model_config=str(tiny_models.model_config)
    )
    images = clip_normalize(synthetic_photo().float()[None])
    result = clip_attention_map(visual, images)

    # Recompute each block's attention from its LayerNorm output and the projection weights.
    inputs: list[torch.Tensor] = []
    blocks = list(visual.transformer.resblocks)
    handles = [b.ln_1.register_forward_hook(lambda _m, _i, out: inputs.append(out)) for b in blocks]
    with torch.no_grad():
        visual(images)
    for handle in handles:
        handle.remove()
    per_block = []
    for block, x in zip(blocks, inputs, strict=True):
        attn = block.attn
        heads, width = attn.num_heads, attn.embed_dim
        q, k, _ = F.linear(x[0], attn.in_proj_weight, attn.in_proj_bias).split(width, dim=-1)
        q = q.reshape(-1, heads, width // heads).transpose(0, 1)
        k = k.reshape(-1, heads, width // heads).transpose(0, 1)
        probabilities = (q @ k.transpose(1, 2) / (width // heads) ** 0.5).softmax(dim=-1)
        per_block.append(probabilities.mean(dim=0)[0, 1:])
    grid = torch.stack(per_block).mean(dim=0).reshape(1, 1, 7, 7)
    expected = F.interpolate(grid, size=(224, 224), mode="bicubic", align_corners=False)[0, 0]
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    assert result.shape == (224, 224)
    assert result.min().item() == 0 and result.max().item() == pytest.approx(1)
    assert torch.allclose(result, expected, atol=1e-5)


def test_dino_attention_map_matches_timms_unfused_attention(tiny_models: TinyModels) -> None:
    dino = load_dino(str(tiny_models.dino_weights), device=CPU)
    images = imagenet_normalize(synthetic_photo().float()[None])
    result = dino_attention_map(dino, images)

    reference = make_dino(seed=3)
    last = reference.blocks[-1].attn
    last.fused_attn = False  # timm then forms the probabilities and passes them through attn_drop
    captured: list[torch.Tensor] = []
    last.attn_drop.register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0]))
    with torch.no_grad():
        reference.forward_features(images)
    grid = captured[0][0, :, 0, 1:].mean(dim=0).reshape(1, 1, 28, 28)
    expected = F.interpolate(grid, size=(224, 224), mode="bicubic", align_corners=False)[0, 0]
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    assert torch.allclose(result, expected, atol=1e-5)


def test_sampling_probabilities_is_a_softmax_over_positive_entries() -> None:
    generator = torch.Generator().manual_seed(3)
    attention = torch.rand(224, 224, generator=generator)
    edges = (torch.rand(224, 224, generator=generator) > 0.7).float()
    probabilities = sampling_probabilities(attention, edges, None, 0.3)
    saliency = (1 - edges) * attention
    saliency = (saliency - saliency.min()) / (saliency.max() - saliency.min())
    positive = saliency > 0
    assert probabilities.sum().item() == pytest.approx(1, abs=1e-5)
    assert (probabilities[~positive] == 0).all() and (probabilities[positive] > 0).all()
    expected = torch.softmax(saliency[positive] / 0.3, dim=0)
    assert torch.allclose(probabilities[positive], expected, atol=1e-9)
    # The temperature sharpens: the most salient pixel gets e^(1/0.3) times the least salient positive one.
    ratio = probabilities[positive].max() / probabilities[positive].min()
    assert ratio.item() == pytest.approx(float(np.exp((1 - saliency[positive].min().item()) / 0.3)), rel=1e-3)


def test_sampling_probabilities_respects_the_mask_and_falls_back() -> None:
    attention = torch.rand(224, 224, generator=torch.Generator().manual_seed(4))
    mask = torch.zeros(224, 224)
    mask[50:100, 60:120] = 1
    probabilities = sampling_probabilities(attention, torch.zeros(224, 224), mask, 0.3)
    assert probabilities[mask == 0].sum() == 0 and probabilities.sum().item() == pytest.approx(1, abs=1e-5)
    # Everything under an edge: no positive entry, so every pixel of the mask is equally likely.
    flat = sampling_probabilities(attention, torch.ones(224, 224), mask, 0.3)
    assert torch.allclose(flat[mask == 1], torch.full_like(flat[mask == 1], 1 / mask.sum().item()))
    assert flat[mask == 0].sum() == 0


@pytest.mark.parametrize("backend", ["clip", "dino"])
def test_saliency_probabilities_end_to_end(tiny_models: TinyModels, backend: str) -> None:
    settings = tiny_models.settings(saliency=backend)
    if backend == "dino":
        settings = settings.replace(saliency_weights=str(tiny_models.dino_weights))
    probabilities = saliency_probabilities(synthetic_photo().float(), None, settings, CPU)
    assert probabilities.shape == (224, 224) and probabilities.dtype == torch.float32
    assert probabilities.sum().item() == pytest.approx(1, abs=1e-4)
    assert (probabilities >= 0).all() and (probabilities == 0).any()
