"""The differentiable stroke renderer: reference images and gradient, a real SVG renderer, robustness, fitting.

Reference data (``tests/data/renderer_reference``, a copy of ``shared/data/renderer_reference``, described in
``shared/spec/renderer.md``): a 16-stroke scene on 224², its exact box-filtered coverage (diffvg, 64×64 samples per
pixel), cairo's render of its SVG, and the exact gradient of an MSE loss. Margins are stated beside each threshold.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from clipasso_engine.render import render

# A copy of shared/data/renderer_reference, kept with the tests so a bare clone can run them.
REFERENCE = Path(__file__).resolve().parent / "data" / "renderer_reference"
#: Both rasterisers: sparse (the CPU default) and dense (the CUDA and MPS default) must pass every edge case.
METHODS = ["sparse", "dense"]


def _reference(name: str) -> torch.Tensor:
    path = REFERENCE / name
    if not path.exists():
        pytest.fail(f"reference data missing: {path}")
    return torch.from_numpy(np.load(path)).double()


def _scene() -> torch.Tensor:
    scene = json.loads((REFERENCE / "scene.json").read_text())
    assert scene["canvas"] == [224, 224] and scene["svg_stroke_width"] == 3.0
    return torch.tensor(scene["strokes"], dtype=torch.float32)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a.double() - b.double()) ** 2).mean()))


def _random_strokes(generator: torch.Generator, shape: tuple[int, ...], side: float, step: float) -> torch.Tensor:
    """Strokes like the spec's scene: a start point, then a random walk of three steps of ±``step`` per axis."""
    start = torch.rand(*shape, 1, 2, generator=generator) * (side - 40) + 20
    walk = ((torch.rand(*shape, 3, 2, generator=generator) * 2 - 1) * step).cumsum(dim=-2)
    return torch.cat((start, start + walk), dim=-2)


# --- shapes and arguments ---------------------------------------------------------------------------------------


def test_shapes_dtype_and_range() -> None:
    points = _random_strokes(torch.Generator().manual_seed(0), (2, 5), 64, 20)
    image = render(points, (48, 64))
    assert image.shape == (2, 48, 64) and image.dtype == torch.float32
    assert 0 <= float(image.min()) < 0.1 and float(image.max()) == 1.0
    assert render(points[1], (48, 64)).shape == (48, 64)
    assert render(points.double(), (48, 64)).dtype == torch.float64


def test_half_precision_and_autocast_keep_full_precision_inside() -> None:
    points = _random_strokes(torch.Generator().manual_seed(6), (8,), 96, 30)
    exact = render(points, (96, 96))
    half = render(points.half(), (96, 96))
    assert half.dtype == torch.float16
    # Only the result is rounded to fp16 (the points' own fp16 rounding is in both).
    torch.testing.assert_close(half.float(), render(points.half().float(), (96, 96)), atol=1e-3, rtol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = render(points, (96, 96))
    assert autocast.dtype == torch.float32
    torch.testing.assert_close(autocast, exact, atol=1e-6, rtol=0)


def test_batch_items_render_independently() -> None:
    points = _random_strokes(torch.Generator().manual_seed(1), (3, 6), 96, 30)
    batched = render(points, (96, 96))
    for b in range(3):
        torch.testing.assert_close(batched[b], render(points[b], (96, 96)), atol=1e-6, rtol=0)


def test_no_strokes_is_a_white_canvas() -> None:
    image = render(torch.zeros(2, 0, 4, 2), (10, 12))
    assert image.shape == (2, 10, 12) and bool((image == 1).all())


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("points", "size", "segments"),
    [
        (torch.zeros(5, 3, 2), (8, 8), None),
        (torch.zeros(5, 4, 2, dtype=torch.long), (8, 8), None),
        (torch.zeros(5, 4, 2), (0, 8), None),
        (torch.zeros(5, 4, 2), (8, 8), 0),
    ],
)
def test_bad_arguments_raise(points: torch.Tensor, size: tuple[int, int], segments: int | None, method: str) -> None:
    with pytest.raises(ValueError):
        render(points, size, segments=segments, method=method)


def _with(value: float, index: tuple[int, ...], shape: tuple[int, ...] = (5, 4, 2)) -> torch.Tensor:
    tensor = torch.full(shape, 3.0)
    tensor[index] = value
    return tensor


NAN, INF = float("nan"), float("inf")
NON_FINITE = [
    ({"points": _with(NAN, (2, 1, 0))}, "1 NaN and 0 infinite"),
    ({"points": torch.full((5, 4, 2), NAN)}, "40 NaN"),
    ({"points": _with(INF, (0, 3, 1))}, "0 NaN and 1 infinite"),  # rejected, not clamped onto the canvas edge
    ({"points": _with(-INF, (4, 0, 0))}, "1 infinite"),
    ({"stroke_width": _with(INF, (3,), (5,))}, "widths and opacities must be finite, got 1"),
    ({"opacity": _with(NAN, (0,), (5,))}, "widths and opacities must be finite, got 1"),
    ({"stroke_width": NAN}, "stroke_width must be finite"),
    ({"opacity": INF}, "opacity must be finite"),
]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("kwargs", "message"), NON_FINITE)
def test_non_finite_input_is_rejected_by_both_methods(
    kwargs: dict[str, torch.Tensor | float], message: str, method: str
) -> None:
    arguments: dict[str, torch.Tensor | float] = {"points": torch.full((5, 4, 2), 3.0), **kwargs}
    with pytest.raises(ValueError, match=message):
        render(size=(8, 8), method=method, **arguments)  # type: ignore[arg-type]


def test_check_finite_false_skips_the_dense_read_only() -> None:
    points = _with(NAN, (2, 1, 0))
    # The dense method then renders without looking (a training loop checks its loss instead): NaN pixels.
    image = render(points, (8, 8), method="dense", check_finite=False)
    assert bool(image.isnan().any())
    infinite = _with(INF, (2, 1, 0))  # not clamped onto the canvas edge: the loop's loss sees it as NaN too
    assert bool(render(infinite, (8, 8), method="dense", check_finite=False).isnan().any())
    # The sparse method reads its sizes back anyway, so it checks whatever the flag says.
    with pytest.raises(ValueError, match="1 NaN"):
        render(points, (8, 8), method="sparse", check_finite=False)


def test_dense_method_reads_nothing_back_without_the_check() -> None:
    """Under fake tensors any read of a value from the device raises: the dense path must make none."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        points = (torch.rand(2, 5, 4, 2) * 30).requires_grad_()
        width = torch.full((5,), 0.5, requires_grad=True)
        render(points, (32, 32), width, method="dense", check_finite=False).sum().backward()
        assert points.grad is not None and points.grad.shape == points.shape
        with pytest.raises(Exception, match=r"local_scalar_dense|data-dependent"):
            render(points, (32, 32), width, method="dense")  # the check is one read: the test can tell


# --- reference data ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["sparse", "dense"])
@pytest.mark.parametrize("name", ["diffvg_box64x64_seed0.npy", "cairo.npy"])
def test_reference_scene_matches(name: str, method: str) -> None:
    reference = _reference(name)
    image = render(_scene(), (224, 224), stroke_width=3.0, method=method)
    # Measured: sparse 44.0 dB / 0.0011 against the exact coverage, 42.2 dB / 0.0014 against cairo; dense (32
    # segments per stroke) 44.4 dB / 0.0010 and 42.0 dB (cairo itself is 42.8 dB from the exact image).
    # Thresholds are the issue's.
    assert _psnr(image, reference) >= 40.0
    assert float((image.double() - reference).abs().mean()) <= 0.002


@pytest.mark.parametrize("method", ["sparse", "dense"])
def test_reference_gradient(method: str) -> None:
    target = _reference("grad_target.npy").float()
    expected = _reference("grad_reference.npy")
    points = _scene().requires_grad_()
    loss = ((render(points, (224, 224), stroke_width=3.0, method=method) - target) ** 2).mean()
    loss.backward()
    assert points.grad is not None
    grad = points.grad.double().flatten()
    # Reference loss 0.063456 (measured 0.06336); gradient measured: cosine 0.9987, norm ratio 0.982 (dense 0.980).
    assert abs(float(loss.detach()) - 0.063456) < 0.001
    assert float(torch.nn.functional.cosine_similarity(grad, expected.flatten(), dim=0)) >= 0.995
    assert abs(float(grad.norm() / expected.norm()) - 1) <= 0.05


def test_real_svg_renderer_agrees() -> None:
    """The engine's SVG, rendered by cairo (the library behind Inkscape's and most SVG rasterisers' output)."""
    cairosvg = pytest.importorskip("cairosvg", reason="cairosvg is a test dependency (pyproject [test])")
    from PIL import Image

    from clipasso_engine.svg import strokes_to_svg

    points = _random_strokes(torch.Generator().manual_seed(2), (12,), 160, 45).clamp(2, 158)
    svg = strokes_to_svg(points, 3.0, (160, 120))  # image_size is (W, H)
    png = cairosvg.svg2png(bytestring=svg.encode(), background_color="white")
    real = torch.from_numpy(np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float64) / 255)
    assert real.shape == (120, 160)
    ours = render(points, (120, 160), stroke_width=3.0)
    assert float(ours.min()) < 0.01  # the strokes are on the canvas, so the comparison is not white vs white
    assert _psnr(ours, real) >= 38.0


# --- geometry -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_straight_line_in_exact_cubic_form_renders_whole(method: str) -> None:
    # Control points equally spaced on a line: diffvg draws only the two caps of this curve.
    line = torch.tensor([[20.0, 40.5], [60.0, 40.5], [100.0, 40.5], [140.0, 40.5]])
    image = render(line[None], (80, 160), stroke_width=3.0, method=method)
    assert float(image[40, 20:141].max()) < 1e-3  # black along the whole length
    assert float(image[40, 16]) == 1.0 and float(image[40, 144]) == 1.0  # nothing beyond the round caps
    assert float((1 - image).sum()) == pytest.approx(120 * 3 + math.pi * 1.5**2, rel=0.02)


@pytest.mark.parametrize("method", METHODS)
def test_zero_length_stroke_is_a_round_dot(method: str) -> None:
    points = torch.full((1, 4, 2), 30.0, requires_grad=True)
    image = render(points, (64, 64), stroke_width=4.0, method=method)
    assert float((1 - image.detach()).sum()) == pytest.approx(math.pi * 2.0**2, rel=0.05)
    image.sum().backward()
    assert points.grad is not None and bool(points.grad.isfinite().all())


@pytest.mark.parametrize("method", METHODS)
def test_width_and_opacity(method: str) -> None:
    line = torch.tensor([[[10.0, 20.5], [20.0, 20.5], [30.0, 20.5], [40.0, 20.5]]])
    wide = render(line, (40, 50), stroke_width=torch.tensor([6.0]), method=method)
    assert float((1 - wide).sum()) == pytest.approx(30 * 6 + math.pi * 9, rel=0.02)
    faint = render(line, (40, 50), stroke_width=3.0, opacity=0.25, method=method)
    assert float(faint[20, 25]) == pytest.approx(0.75, abs=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_union_is_max_within_a_stroke_and_over_across_strokes(method: str) -> None:
    across = torch.tensor([[[5.0, 20.5], [15.0, 20.5], [25.0, 20.5], [35.0, 20.5]]])
    down = torch.tensor([[[20.5, 5.0], [20.5, 15.0], [20.5, 25.0], [20.5, 35.0]]])
    crossing = render(torch.cat((across, down)), (40, 40), opacity=0.5, method=method)
    assert float(crossing[20, 20]) == pytest.approx(0.25, abs=1e-5)  # two strokes: (1 − 0.5)²
    # One stroke that doubles back over itself darkens nothing twice.
    back = torch.tensor([[[5.0, 20.5], [35.0, 20.5], [35.0, 20.5], [5.0, 20.5]]])
    assert float(render(back, (40, 40), opacity=0.5, method=method)[20, 20]) == pytest.approx(0.5, abs=1e-5)


def _exact_rows(centre: float, stroke_width: float, n: int) -> torch.Tensor:
    """Exact ink of rows 0..n−1 under an infinitely long band [centre ∓ w/2]: each row's overlap with it."""
    rows = torch.arange(n, dtype=torch.float64)
    top, bottom = centre - stroke_width / 2, centre + stroke_width / 2
    return ((rows + 1).clamp(max=bottom) - rows.clamp(min=top)).clamp_min(0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("vertical", [False, True])
@pytest.mark.parametrize("offset", [32.0, 32.5, 32.3])  # on a pixel edge, on a pixel centre, between
@pytest.mark.parametrize("stroke_width", [0.2, 0.5, 1.0, 3.0])
def test_sub_pixel_and_wide_lines_match_exact_coverage(
    stroke_width: float, offset: float, vertical: bool, method: str
) -> None:
    """Away from the caps a grid-aligned line's ink is exact at any width: the box filter of a band."""
    line = torch.tensor([[[8.0, offset], [24.0, offset], [40.0, offset], [56.0, offset]]], dtype=torch.float64)
    width = torch.tensor([stroke_width], dtype=torch.float64, requires_grad=True)
    image = render(line.flip(-1) if vertical else line, (64, 64), width, method=method)
    ink = 1 - (image.T if vertical else image)
    exact = _exact_rows(offset, stroke_width, 64)
    # Columns 16..48 are at least 8 px from either end; each matches the exact row profile (to the renderer's cap
    # of α at 1 − 1e-6, which keeps its log finite).
    torch.testing.assert_close(ink[:, 16:49], exact[:, None].expand(-1, 33), atol=1.5e-6, rtol=0)
    # Beyond the round caps (w/2 + ½ from the end points, where the slab ends) the canvas is white.
    reach, seen = stroke_width / 2 + 0.5, ink.detach()
    assert bool((seen[:, : math.floor(7.5 - reach) + 1] == 0).all())
    assert bool((seen[:, math.ceil(55.5 + reach) :] == 0).all())
    if offset == 32.3:  # no pixel on a kink of the slab: one more px of width puts one more px of ink per column
        ink[:, 16:49].sum().backward()
        assert width.grad is not None
        assert float(width.grad) == pytest.approx(33.0, abs=1e-6)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("stroke_width", [0.4, 1.0, 3.0])
def test_number_and_tensor_widths_agree(stroke_width: float, method: str) -> None:
    """A number ≥ 1 skips the sub-pixel bound (known on the host); a tensor always applies it: same image."""
    points = _random_strokes(torch.Generator().manual_seed(10), (2, 6), 48, 10)
    as_number = render(points, (48, 48), stroke_width, method=method)
    as_tensor = render(points, (48, 48), torch.full((2, 6), stroke_width), method=method)
    assert float((1 - as_number).sum()) > 5  # strokes on the canvas
    assert torch.equal(as_number, as_tensor)


@pytest.mark.parametrize("method", METHODS)
def test_zero_width_draws_nothing(method: str) -> None:
    line = torch.tensor([[[8.0, 32.5], [24.0, 32.5], [40.0, 32.5], [56.0, 32.5]]])
    assert bool((render(line, (64, 64), 0.0, method=method) == 1).all())
    assert bool((render(line, (64, 64), -2.0, method=method) == 1).all())  # negative counts as 0


def test_fixed_segment_count_converges_to_adaptive() -> None:
    points = _scene()
    adaptive = render(points, (224, 224))
    assert _psnr(render(points, (224, 224), segments=64), adaptive) > 45
    assert _psnr(render(points, (224, 224), segments=4), adaptive) < 35  # the option really changes the flattening


# --- robustness -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "points",
    [
        [[-100.0, -100.0], [-50.0, -80.0], [-60.0, -90.0], [-70.0, -100.0]],  # off the canvas
        [[10.0, 10.0], [10.0, 10.0], [40.0, 40.0], [40.0, 40.0]],  # coincident control points
        [[-1e30, -1e30], [1e30, 1e30], [3e38, -3e38], [32.0, 32.0]],  # huge but finite
        [[32.5, 32.5], [32.5, 32.5], [32.5, 32.5], [32.5, 32.5]],  # a dot centred on a pixel centre
        [[0.0, 0.0], [64.0, 64.0], [0.0, 64.0], [64.0, 0.0]],  # self-crossing, corners of the canvas
    ],
)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("stroke_width", [2.0, 0.3])
def test_finite_image_and_gradient(points: list[list[float]], stroke_width: float, method: str) -> None:
    for dtype in (torch.float32, torch.float64):
        p = torch.tensor([points], dtype=dtype, requires_grad=True)
        width = torch.tensor([stroke_width], dtype=dtype, requires_grad=True)
        image = render(p, (64, 64), stroke_width=width, method=method)
        ((image - 0.3) ** 2).sum().backward()
        image = image.detach()
        assert bool(image.isfinite().all()) and 0 <= float(image.min()) <= float(image.max()) <= 1
        assert p.grad is not None and bool(p.grad.isfinite().all())
        assert width.grad is not None and bool(width.grad.isfinite().all())


@pytest.mark.parametrize("method", METHODS)
def test_off_canvas_stroke_leaves_the_canvas_white(method: str) -> None:
    points = torch.tensor([[[-100.0, -100.0], [-50.0, -80.0], [-60.0, -90.0], [-70.0, -100.0]]], requires_grad=True)
    image = render(points, (64, 64), method=method)
    image.sum().backward()
    assert bool((image == 1).all())
    assert points.grad is not None and bool((points.grad == 0).all())


@pytest.mark.parametrize(
    ("method", "strokes", "side", "step", "stroke_width"),
    # Dense: above diffvg's 256-shape limit, on a canvas a 2-core CPU measures against every stroke in ~2 s.
    [("sparse", 1000, 224, 40, 3.0), ("dense", 300, 64, 11, 1.5)],
)
def test_many_strokes_in_one_call(method: str, strokes: int, side: int, step: float, stroke_width: float) -> None:
    points = _random_strokes(torch.Generator().manual_seed(3), (strokes,), side, step).requires_grad_()
    image = render(points, (side, side), stroke_width, method=method)
    image.mean().backward()
    assert bool(image.isfinite().all()) and 0.02 < float(image.detach().mean()) < 0.5  # most of the canvas is inked
    assert points.grad is not None and bool(points.grad.isfinite().all())
    assert int((points.grad.abs().sum(dim=(1, 2)) > 0).sum()) > 0.9 * strokes  # nearly every stroke gets a gradient


def test_gradcheck_float64() -> None:
    generator = torch.Generator().manual_seed(4)
    points = (torch.rand(2, 3, 4, 2, generator=generator, dtype=torch.float64) * 16).requires_grad_()
    width = torch.full((2, 3), 2.5, dtype=torch.float64, requires_grad=True)
    opacity = torch.tensor([0.9, 0.6, 0.8], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p, w, o: render(p, (16, 16), w, opacity=o), (points, width, opacity))
    assert torch.autograd.gradcheck(lambda p: render(p, (16, 16), 1.5, segments=5), (points,))
    assert torch.autograd.gradcheck(
        lambda p, w, o: render(p, (16, 16), w, opacity=o, method="dense"), (points, width, opacity)
    )
    thin = torch.full((2, 3), 0.6, dtype=torch.float64, requires_grad=True)  # below a pixel: the slab's other branch
    for method in METHODS:
        assert torch.autograd.gradcheck(lambda p, w, m=method: render(p, (16, 16), w, method=m), (points, thin))


def test_dense_and_sparse_methods_agree() -> None:
    """Same strokes, same segment count: the two methods compute the same image and gradient."""
    points = _random_strokes(torch.Generator().manual_seed(8), (2, 12), 64, 12)
    sparse_points, dense_points = points.clone().requires_grad_(), points.clone().requires_grad_()
    sparse = render(sparse_points, (64, 64), 2.0, segments=32, method="sparse")
    dense = render(dense_points, (64, 64), 2.0, segments=32, method="dense")
    torch.testing.assert_close(dense, sparse, atol=1e-5, rtol=0)
    weights = torch.rand(2, 64, 64, generator=torch.Generator().manual_seed(9))
    (sparse * weights).sum().backward()
    (dense * weights).sum().backward()
    assert sparse_points.grad is not None and dense_points.grad is not None
    cosine = torch.nn.functional.cosine_similarity(sparse_points.grad.flatten(), dense_points.grad.flatten(), dim=0)
    assert float(cosine) > 0.999
    with pytest.raises(ValueError, match="method must be"):
        render(points, (8, 8), method="splat")


# --- optimisation -------------------------------------------------------------------------------------------------


def test_fitting_one_curve_to_a_rendered_target_converges() -> None:
    truth = torch.tensor([[[12.0, 50.0], [20.0, 8.0], [44.0, 10.0], [52.0, 52.0]]])
    target = render(truth, (64, 64)).detach()
    noise = torch.tensor([[[3.0, -2.5], [-2.0, 3.0], [2.5, 2.0], [-3.0, -2.0]]])
    points = (truth + noise).requires_grad_()
    optimiser = torch.optim.Adam([points], lr=0.3)
    first = None
    for _ in range(200):
        optimiser.zero_grad()
        loss = ((render(points, (64, 64)) - target) ** 2).mean()
        first = float(loss.detach()) if first is None else first
        loss.backward()
        optimiser.step()
    final = float(((render(points.detach(), (64, 64)) - target) ** 2).mean())
    assert first is not None and final < 0.02 * first
    assert float((points.detach() - truth).abs().max()) < 1.0


# --- accelerators ---------------------------------------------------------------------------------------------------


def _accelerator() -> str | None:
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return None


@pytest.mark.gpu
@pytest.mark.skipif(_accelerator() is None, reason="needs a CUDA or MPS device")
def test_accelerator_matches_cpu() -> None:
    device = _accelerator()
    assert device is not None
    points = _random_strokes(torch.Generator().manual_seed(5), (2, 16), 224, 40)
    on_device = points.to(device).requires_grad_()
    image = render(on_device, (224, 224))
    image.sum().backward()
    assert image.device.type == device
    torch.testing.assert_close(image.cpu(), render(points, (224, 224)), atol=1e-4, rtol=0)
    assert on_device.grad is not None and bool(on_device.grad.isfinite().all())
