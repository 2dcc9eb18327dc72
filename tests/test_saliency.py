"""Saliency: XDoG against an independent torch implementation, attention maps against independent recomputations,
probabilities against a direct computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from skimage.filters import threshold_otsu
from tiny_models import SALIENCY_ARCH, TinyModels, make_dino

from clipasso_engine.normalize import clip_normalize, imagenet_normalize
from clipasso_engine.saliency import (
    clip_attention_map,
    dino_attention_map,
    saliency_probabilities,
    sampling_probabilities,
    xdog,
)
from clipasso_engine.towers import load_clip_visual, load_dino

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


def gaussian_filter_torch(image: torch.Tensor, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """scipy's ``gaussian_filter(mode="reflect")`` written independently in torch, for an (H, W) image."""
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=image.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = image
    for axis in (0, 1):
        n = out.shape[axis]
        # "reflect" repeats the edge pixel (d c b a | a b c d); folding indices modulo 2n covers any radius.
        index = torch.arange(-radius, n + radius) % (2 * n)
        index = torch.where(index >= n, 2 * n - 1 - index, index)
        padded = out.index_select(axis, index)[None, None]
        out = F.conv2d(padded, kernel.view(1, 1, -1, 1) if axis == 0 else kernel.view(1, 1, 1, -1))[0, 0]
    return out


def otsu_torch(values: torch.Tensor, bins: int = 256) -> float:
    """Otsu's threshold over ``bins`` equal bins from min to max, written independently of skimage."""
    flat = values.flatten().double()
    low, high = flat.min(), flat.max()
    edges = low + torch.arange(bins + 1, dtype=torch.float64) * ((high - low) / bins)
    edges[-1] = high
    index = (torch.searchsorted(edges, flat, right=True) - 1).clamp(0, bins - 1)
    counts = torch.bincount(index, minlength=bins).double()
    centres = (edges[:-1] + edges[1:]) / 2
    below, above = counts.cumsum(0), counts.flip(0).cumsum(0).flip(0)
    mean_below = (counts * centres).cumsum(0) / below
    mean_above = (counts * centres).flip(0).cumsum(0).flip(0) / above
    between = below[:-1] * above[1:] * (mean_below[:-1] - mean_above[1:]) ** 2
    return float(centres[torch.nan_to_num(between, nan=0.0).argmax()])


def independent_xdog(normalised: torch.Tensor) -> torch.Tensor:
    """Spec §3.2 step by step, in torch float64, without scipy or skimage; ``normalised`` is (3, H, W)."""
    weights = torch.tensor([0.2125, 0.7154, 0.0721], dtype=torch.float64).view(3, 1, 1)
    gray = (normalised.double() * weights).sum(dim=0)
    dog = gaussian_filter_torch(gray, 0.8) - 0.98 * gaussian_filter_torch(gray, 8.0)
    value = torch.where(dog < -0.1, torch.ones_like(dog), 1 + torch.tanh(200.0 * dog))
    value = (value - value.min()) / (value.max() - value.min())
    return (value >= otsu_torch(value)).double()


@pytest.mark.parametrize(("shape", "sigma"), [((224, 224), 0.8), ((224, 224), 8.0), ((12, 9), 8.0)])
def test_the_independent_gaussian_filter_is_scipys(shape: tuple[int, int], sigma: float) -> None:
    # Checks the test's own reference. The 12×9 case has a kernel radius (32) wider than the image.
    image = torch.rand(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = gaussian_filter(image.numpy(), sigma, mode="reflect", truncate=4.0)
    assert np.allclose(gaussian_filter_torch(image, sigma).numpy(), expected, atol=1e-12)


def test_the_independent_otsu_is_skimages() -> None:
    generator = torch.Generator().manual_seed(2)
    bimodal = torch.cat([0.2 + 0.05 * torch.randn(3000, generator=generator), 0.7 + 0.1 * torch.randn(1000)])
    for values in (bimodal.double(), torch.rand(50, 40, generator=generator, dtype=torch.float64)):
        assert otsu_torch(values) == pytest.approx(threshold_otsu(values.numpy(), nbins=256), abs=1e-12)


def test_xdog_matches_an_independent_implementation_on_a_synthetic_photo() -> None:
    normalised = clip_normalize(synthetic_photo()[None])[0]
    edges = xdog(normalised)
    expected = independent_xdog(normalised)
    assert edges.shape == (224, 224)
    assert set(edges.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(edges.double(), expected)
    assert 0.2 < edges.mean() < 0.8  # a real binarisation, not a constant map
    # As spec §3.2 describes: (1 - edges) keeps the dark disc and the dark line, drops the bright square.
    y, x = torch.meshgrid(torch.arange(224), torch.arange(224), indexing="ij")
    keep = 1 - edges
    assert keep[(x - 80) ** 2 + (y - 90) ** 2 < 30**2].mean() > 0.9
    assert keep[31, 30:200].mean() > 0.9
    assert keep[135:185, 125:195].mean() < 0.1


def test_xdog_does_not_clip_the_normalised_image() -> None:
    # A CLIP-normalised image spans about [-1.8, 2.1]: clipping the grey to [0, 1] first changes the map.
    normalised = clip_normalize(synthetic_photo()[None])[0]
    clipped = independent_xdog(normalised.clamp(0, 1))
    assert not torch.equal(xdog(normalised).double(), clipped)


def test_xdog_takes_one_image() -> None:
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        xdog(torch.zeros(1, 3, 224, 224))
    flat = xdog(torch.zeros(3, 16, 16))  # a constant image: no edges to find, and no division by zero
    assert flat.shape == (16, 16) and torch.isfinite(flat).all()


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


def direct_probabilities(attention: torch.Tensor, edges: torch.Tensor, temperature: float) -> torch.Tensor:
    """Spec §3.3-3.4 computed directly: normalise the attention, mask it, no renormalisation, softmax."""
    normalised = (attention - attention.min()) / (attention.max() - attention.min())
    saliency = (1 - edges) * normalised
    positive = saliency > 0
    expected = torch.zeros_like(saliency)
    expected[positive] = torch.softmax(saliency[positive] / temperature, dim=0)
    return expected


def test_sampling_probabilities_is_a_softmax_over_positive_entries() -> None:
    generator = torch.Generator().manual_seed(3)
    attention = torch.rand(224, 224, generator=generator)
    edges = (torch.rand(224, 224, generator=generator) > 0.7).float()
    probabilities = sampling_probabilities(attention, edges, None, 0.3)
    expected = direct_probabilities(attention, edges, 0.3)
    positive = expected > 0
    assert probabilities.sum().item() == pytest.approx(1, abs=1e-5)
    assert (probabilities[~positive] == 0).all() and (probabilities[positive] > 0).all()
    assert torch.allclose(probabilities, expected, atol=1e-9)


def test_saliency_is_not_renormalised_when_the_edges_cover_the_attention_peak() -> None:
    # Attention on an arbitrary scale (not yet in [0, 1]) peaking at (100, 120); the XDoG mask covers the peak.
    y, x = torch.meshgrid(torch.arange(224.0), torch.arange(224.0), indexing="ij")
    attention = 0.5 + 2.5 * torch.exp(-((x - 120) ** 2 + (y - 100) ** 2) / (2 * 40.0**2))
    edges = (((x - 120) ** 2 + (y - 100) ** 2) < 30.0**2).float()
    probabilities = sampling_probabilities(attention, edges, None, 0.3)
    expected = direct_probabilities(attention, edges, 0.3)
    kept = (1 - edges) * (attention - attention.min()) / (attention.max() - attention.min())
    assert kept.max() < 0.8  # the peak is covered, so renormalising the product would sharpen the softmax
    assert torch.allclose(probabilities, expected, rtol=1e-5, atol=1e-12)
    # The ratio between the most and least likely kept pixels is e^((max - min) / τ) of the un-renormalised map.
    positive = expected > 0
    ratio = float(probabilities[positive].max() / probabilities[positive].min())
    assert ratio == pytest.approx(float(np.exp(float(kept.max() - kept[positive].min()) / 0.3)), rel=1e-4)


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
