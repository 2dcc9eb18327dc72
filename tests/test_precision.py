"""The precision policy: which autocast "auto" picks per device, bf16 against fp32 on the CPU, denormal flushing."""

from __future__ import annotations

import contextlib
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data
from test_optimize import scene, target_image
from tiny_models import TinyModels

from clipasso_engine import precision
from clipasso_engine.augment import apply_augmentations, draw_augmentations
from clipasso_engine.config import SketchSettings
from clipasso_engine.loss_network import LossNetwork, load_loss_network
from clipasso_engine.losses import clip_pair_losses
from clipasso_engine.normalize import clip_normalize
from clipasso_engine.optimize import batch_losses, optimise_strokes
from clipasso_engine.precision import (
    autocast_context,
    denormals_flushed,
    flush_denormals,
    loss_scale,
    resolve_precision,
)
from clipasso_engine.render import render

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def network(tiny_models: TinyModels) -> LossNetwork:
    return load_loss_network(tiny_models.settings(), CPU)


# --- which precision "auto" means -------------------------------------------------------------------------------


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """cuda:0 a Turing card (7.5: bf16 only emulated), cuda:1 an Ampere card (8.6); cuda:0 is the current device."""
    capabilities = {0: (7, 5), 1: (8, 6)}

    def capability(device: torch.device | int | None = None) -> tuple[int, int]:
        index = device.index if isinstance(device, torch.device) else device
        return capabilities[index or 0]

    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", capability)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    # What torch's own check says for the current device when emulation counts: the old policy's source of error.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)


@pytest.mark.usefixtures("two_gpus")
def test_auto_on_cuda_uses_bf16_only_where_the_selected_gpu_has_it_natively() -> None:
    assert resolve_precision(torch.device("cuda:0"), "auto") == "fp16"  # emulated bf16 is slower: fp16
    assert resolve_precision(torch.device("cuda:1"), "auto") == "bf16"  # the selected device, not the current one
    assert resolve_precision(torch.device("cuda"), "auto") == "fp16"


@pytest.mark.usefixtures("two_gpus")
def test_explicit_precisions_are_kept_and_unknown_ones_refused() -> None:
    for device in (CPU, torch.device("cuda:0"), torch.device("mps")):
        for name in ("fp32", "bf16", "fp16"):
            assert resolve_precision(device, name) == name
    with pytest.raises(ValueError, match="precision must be"):
        resolve_precision(CPU, "bf8")
    assert resolve_precision(torch.device("mps"), "auto") == "fp16"


def test_rocm_gpus_count_as_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.version, "hip", "6.0")
    assert resolve_precision(torch.device("cuda:0"), "auto") == "bf16"


@pytest.mark.parametrize("native", [True, False])
def test_auto_on_the_cpu_is_bf16_only_where_the_cpu_has_it_natively(
    monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    assert resolve_precision(CPU, "auto") == ("bf16" if native else "fp32")
    context = autocast_context(CPU, "auto")
    if native:
        assert isinstance(context, torch.autocast) and context.fast_dtype == torch.bfloat16
    else:
        assert isinstance(context, contextlib.nullcontext)
    assert resolve_precision(CPU, "fp32") == "fp32"  # still there when asked for
    assert resolve_precision(CPU, "bf16") == "bf16"


@pytest.mark.parametrize("native", [True, False])
def test_explicit_bf16_on_a_cpu_without_it_warns_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, native: bool
) -> None:
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    precision._warn_emulated_bf16.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="clipasso_engine"):
            for _ in range(3):
                assert resolve_precision(CPU, "bf16") == "bf16"
            assert resolve_precision(CPU, "fp32") == "fp32"
    finally:
        precision._warn_emulated_bf16.cache_clear()
    warnings = [r.getMessage() for r in caplog.records if "emulated" in r.getMessage()]
    assert warnings == (
        [] if native else ["This CPU has no bf16 arithmetic: --precision bf16 is emulated here and slower than fp32."]
    )


X86_FLAGS = "fpu vme de pse tsc msr pae mce cx8 apic sse sse2 avx avx2 avx512f avx512bw"
CPUINFO = {
    "x86 AVX512-BF16": (f"processor\t: 0\nflags\t\t: {X86_FLAGS} avx512_bf16\n", True),
    "x86 AMX-BF16": (f"processor\t: 0\nflags\t\t: {X86_FLAGS} amx_tile amx_bf16 amx_int8\n", True),
    "x86 AVX512 without BF16": (f"processor\t: 0\nflags\t\t: {X86_FLAGS} avx512_vnni\n", False),
    "Arm with BF16": ("processor\t: 0\nFeatures\t: fp asimd evtstrm aes sve bf16 i8mm\n", True),
    "Arm without BF16": ("processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n", False),
    "unreadable": (None, False),
}


@pytest.mark.parametrize("name", list(CPUINFO))
def test_cpu_bf16_detection_from_linux_cpuinfo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str) -> None:
    text, native = CPUINFO[name]
    path = tmp_path / "cpuinfo"
    if text is not None:
        path.write_text(text)
    flags = precision._linux_cpu_flags(path)
    monkeypatch.setattr(precision, "_linux_cpu_flags", lambda: flags)
    monkeypatch.setattr(precision.sys, "platform", "linux")
    monkeypatch.setattr(precision, "_torch_reports_native_bf16", lambda: False)  # the CPU of the test machine
    precision.cpu_has_native_bf16.cache_clear()
    try:
        assert precision.cpu_has_native_bf16() is native
        assert resolve_precision(CPU, "auto") == ("bf16" if native else "fp32")
    finally:
        precision.cpu_has_native_bf16.cache_clear()


@pytest.mark.parametrize(("sysctl", "native"), [("1\n", True), ("0\n", False), ("", False)])
def test_cpu_bf16_detection_on_macos(monkeypatch: pytest.MonkeyPatch, sysctl: str, native: bool) -> None:
    class Done:
        stdout = sysctl

    monkeypatch.setattr(precision.sys, "platform", "darwin")
    monkeypatch.setattr(precision.subprocess, "run", lambda *args, **kwargs: Done())
    monkeypatch.setattr(precision, "_torch_reports_native_bf16", lambda: False)
    precision.cpu_has_native_bf16.cache_clear()
    try:
        assert precision.cpu_has_native_bf16() is native
    finally:
        precision.cpu_has_native_bf16.cache_clear()


def test_auto_on_this_cpu_follows_the_detection() -> None:
    """Unmocked, on this machine's CPU (AVX512-BF16 on the project's machine: bf16)."""
    precision.cpu_has_native_bf16.cache_clear()  # detected afresh, not a mocked test's leftover
    native = precision.cpu_has_native_bf16()
    assert resolve_precision(CPU, "auto") == ("bf16" if native else "fp32")
    flags = precision._linux_cpu_flags()
    if sys.platform.startswith("linux") and flags:
        assert native is (bool(flags & {"avx512_bf16", "amx_bf16", "bf16"}) or precision._torch_reports_native_bf16())


def test_loss_scale_only_under_fp16() -> None:
    assert loss_scale(autocast_context(CPU, "fp16")) == 1024.0
    assert loss_scale(autocast_context(CPU, "bf16")) == 1.0
    assert loss_scale(autocast_context(CPU, "fp32")) == 1.0


# --- bf16 against fp32 on the CPU ---------------------------------------------------------------------------------


def photo(name: str) -> torch.Tensor:
    """A real photo from scikit-image, padded square with white and resized to (3, 224, 224) in [0, 1]."""
    array = getattr(data, name)().astype(np.float32) / 255.0
    image = torch.from_numpy(array).permute(2, 0, 1)
    _, h, w = image.shape
    side = max(h, w)
    square = torch.ones(3, side, side)
    square[:, (side - h) // 2 : (side - h) // 2 + h, (side - w) // 2 : (side - w) // 2 + w] = image
    return F.interpolate(square[None], size=(224, 224), mode="bicubic", antialias=True)[0].clamp(0, 1)


def pair_losses_and_gradient(
    network: LossNetwork, points: torch.Tensor, target: torch.Tensor, grids: torch.Tensor, name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each (sketch, target) pair's loss (1 clean + A augmented) and the gradient of their mean w.r.t. the points."""
    autocast = autocast_context(CPU, name)
    points = points.clone().requires_grad_(True)
    sketch = render(points, (224, 224), stroke_width=3.0)[None, None].expand(-1, 3, -1, -1)
    sketches = torch.cat([sketch, apply_augmentations(sketch, grids)])
    targets = torch.cat([target[None], apply_augmentations(target[None], grids)])
    with autocast:
        sketch_features = network(clip_normalize(sketches))
        with torch.no_grad():
            target_features = network(clip_normalize(targets))
    pairs = clip_pair_losses(sketch_features, target_features)
    pairs.mean().backward()
    assert points.grad is not None
    return pairs.detach(), points.grad


PHOTOS = ("chelsea", "astronaut", "coffee")


def compare_on_photos(
    network: LossNetwork, stroke_sets: tuple[int, ...], photos: tuple[str, ...] = PHOTOS
) -> list[tuple[str, int, float, float]]:
    """(photo, strokes, worst relative pair-loss difference, gradient cosine) of bf16 against fp32."""
    grids = draw_augmentations(7, 1, 4).grids(0)
    rows = []
    with flush_denormals():
        for name in photos:
            target = photo(name)
            for seed in stroke_sets:
                points = scene(seed, strokes=16)
                fp32_losses, fp32_gradient = pair_losses_and_gradient(network, points, target, grids, "fp32")
                bf16_losses, bf16_gradient = pair_losses_and_gradient(network, points, target, grids, "bf16")
                assert fp32_losses.shape == (5,) and torch.isfinite(fp32_losses).all()
                relative = float(((bf16_losses - fp32_losses) / fp32_losses).abs().max())
                cosine = float(F.cosine_similarity(bf16_gradient.flatten(), fp32_gradient.flatten(), dim=0))
                rows.append((name, seed, relative, cosine))
    return rows


def test_bf16_matches_fp32_on_real_photos_with_tiny_weights(network: LossNetwork) -> None:
    """Tiny non-degenerate weights. Measured here: pair losses within 0.53 %, gradient cosine 0.982-0.995.

    The issue's 0.99 cosine holds for the product's network (the full-size test below), not for this 4-channel stem:
    the bar here only catches a broken bf16 path (an fp16 path without its loss scale, say, falls far below).
    """
    for name, seed, relative, cosine in compare_on_photos(network, (3, 4)):
        assert relative <= 0.01, (name, seed, relative)
        assert cosine >= 0.97, (name, seed, cosine)


def full_size_loss_network() -> LossNetwork:
    """RN101 as the product runs it (BatchNorms folded, channels-last), random weights with bn3 scales set to 1
    (spec §10), so that every residual branch counts."""
    import open_clip

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        visual = open_clip.create_model("RN101", pretrained=None).visual.eval()
    for name, parameter in visual.named_parameters():
        if name.startswith("layer") and name.endswith("bn3.weight"):
            torch.nn.init.ones_(parameter)
        parameter.requires_grad_(False)
    return LossNetwork(visual)


@pytest.fixture(scope="module")
def full_size_network() -> LossNetwork:
    return full_size_loss_network()


#: The full-size check's photos and 16-stroke sets (scene seeds), fixed before measuring.
FULL_SIZE_PHOTOS = ("chelsea", "astronaut", "coffee", "hubble_deep_field")
FULL_SIZE_STROKES = (3, 4)


@pytest.mark.slow
def test_bf16_matches_fp32_on_real_photos_with_the_full_size_network(full_size_network: LossNetwork) -> None:
    """The issue's bar on RN101 for bf16, the precision "auto" picks on a CPU with bf16 arithmetic. Measured here
    (AVX512-BF16, 2 threads; benchmarks/bf16_islands.py error, 6 photos × 3 stroke sets): pair losses within
    0.47-0.85 % of fp32's (0.51-0.85 % on these 8), gradient cosine 0.9997-0.9998. Almost all of the error is in the
    semantic term, whose 1 − cos is about 0.005 with random weights. Slow (about 30 s), and run by CI, which runs
    every test."""
    rows = compare_on_photos(full_size_network, FULL_SIZE_STROKES, FULL_SIZE_PHOTOS)
    assert len(rows) == len(FULL_SIZE_PHOTOS) * len(FULL_SIZE_STROKES)
    for name, seed, relative, cosine in rows:
        assert relative <= 0.01, (name, seed, relative)
        assert cosine >= 0.99, (name, seed, cosine)


def test_bf16_converges_like_fp32_on_a_rendered_target(network: LossNetwork) -> None:
    """The convergence test of test_optimize under both precisions: bf16 ends within 20 % of fp32's image error."""
    truth = scene(7, strokes=5)
    target = target_image(truth)
    initial = (truth + 10 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(9)))[None]
    plan = draw_augmentations(0, 80, 4)

    def image_error(points: torch.Tensor) -> float:
        return float((target_image(points) - target).abs().mean())

    errors = {}
    for name in ("fp32", "bf16"):
        settings = SketchSettings(
            iterations=80, seeds=1, augmentations=4, eval_every=1, early_stop_delta=0.0, precision=name
        )
        result = optimise_strokes(initial, target, network, settings, plan, width=3.0)
        assert result.precision == name
        assert result.best_so_far[-1] < 0.5 * result.best_so_far[0], name
        errors[name] = image_error(result.points)
    before = image_error(initial[0])
    assert errors["bf16"] < 0.7 * before, (before, errors)
    assert errors["bf16"] <= 1.2 * errors["fp32"], errors


def test_the_run_records_what_auto_resolved_to(network: LossNetwork) -> None:
    settings = SketchSettings(iterations=1, seeds=1, augmentations=0)
    target = target_image(scene(1))
    result = optimise_strokes(scene(2)[None], target, network, settings, draw_augmentations(0, 1, 0), width=3.0)
    assert result.precision == resolve_precision(CPU, "auto") and result.precision in ("bf16", "fp32")


def test_bf16_leaves_the_points_renderer_and_adam_state_in_fp32(network: LossNetwork) -> None:
    settings = SketchSettings(augmentations=2, precision="bf16")
    points = torch.stack([scene(3), scene(4)]).requires_grad_(True)
    target = target_image(scene(5))
    autocast = autocast_context(CPU, "bf16")
    with torch.no_grad(), autocast:
        clean_target = network(clip_normalize(target[None]))
    grids = draw_augmentations(0, 1, 2).grids(0)
    per_seed, clean = batch_losses(points, target, clean_target, network, grids, settings, 3.0, autocast)
    assert per_seed.dtype == clean.dtype == torch.float32
    per_seed.sum().backward()
    assert points.grad is not None and points.grad.dtype == torch.float32


# --- denormal flushing --------------------------------------------------------------------------------------------


@pytest.fixture
def restore_flush_flag() -> object:
    was = denormals_flushed()
    yield
    torch.set_flush_denormal(was)


@pytest.mark.usefixtures("restore_flush_flag")
@pytest.mark.skipif(not torch.set_flush_denormal(False), reason="this CPU cannot flush denormals")
@pytest.mark.parametrize("caller_had_it_on", [True, False])
def test_flush_denormals_restores_what_the_caller_had(caller_had_it_on: bool) -> None:
    torch.set_flush_denormal(caller_had_it_on)
    assert denormals_flushed() is caller_had_it_on
    with flush_denormals():
        assert denormals_flushed()
        with flush_denormals():
            assert denormals_flushed()
        assert denormals_flushed()  # the inner block left the outer block's setting alone
    assert denormals_flushed() is caller_had_it_on


@pytest.mark.usefixtures("restore_flush_flag")
@pytest.mark.skipif(not torch.set_flush_denormal(False), reason="this CPU cannot flush denormals")
def test_flush_denormals_is_per_thread_so_concurrent_blocks_each_get_it() -> None:
    """The flag is per thread: a block entered while another thread is inside one still turns it on for its own
    thread, and leaving it does not turn it off for the other."""
    torch.set_flush_denormal(False)
    inside, release, seen = threading.Event(), threading.Event(), {}

    def first() -> None:
        with flush_denormals():
            inside.set()
            release.wait(10)
            seen["first, after the other left"] = denormals_flushed()

    thread = threading.Thread(target=first)
    thread.start()
    assert inside.wait(10)
    with flush_denormals():
        seen["second, inside"] = denormals_flushed()
    seen["second, after"] = denormals_flushed()
    release.set()
    thread.join(10)
    assert seen == {"second, inside": True, "second, after": False, "first, after the other left": True}
