"""The ``sketch()`` API end to end with the tiny models: result facts, image frame, placement over the object,
masks, progress and status callbacks, cancel and stop, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_models import TinyModels

from clipasso_engine.api import SketchProgress, SketchResult, sketch
from clipasso_engine.config import SketchSettings
from clipasso_engine.errors import Cancelled, MaskError, OutOfMemory, SettingsError
from clipasso_engine.optimize import RunControl

W, H = 320, 160  # non-square on purpose: the padding offset must be undone
DISK = (250, 60, 28)  # centre x, centre y, radius: off-centre, upper right


def _tiny(**changes: object) -> SketchSettings:
    """Tiny-run settings; the models come from ``tiny_env``'s environment variables."""
    base: dict[str, object] = {"strokes": 6, "iterations": 6, "seeds": 1, "augmentations": 1}
    return SketchSettings(**{**base, **changes})  # type: ignore[arg-type]


def _disks(*disks: tuple[int, int, int], alpha: bool = False) -> np.ndarray:
    """A white W×H image with dark disks; with ``alpha``, only the first disk is opaque (RGBA)."""
    yy, xx = np.mgrid[0:H, 0:W]
    rgb = np.full((H, W, 3), 255, np.uint8)
    opaque = np.zeros((H, W), bool)
    for i, (cx, cy, r) in enumerate(disks):
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
        rgb[inside] = 20
        if i == 0:
            opaque = (xx - cx) ** 2 + (yy - cy) ** 2 <= (r + 6) ** 2
    if not alpha:
        return rgb
    return np.dstack([rgb, np.where(opaque, 255, 0).astype(np.uint8)])


def _points(result: SketchResult) -> np.ndarray:
    points = np.asarray(result.strokes, dtype=np.float64)
    assert points.shape == (result.settings.strokes, 4, 2)
    return points


def _starts_on(points: np.ndarray, disk: tuple[int, int, int], margin: float) -> bool:
    """Whether every stroke's first control point is within ``margin`` px of the disk."""
    cx, cy, r = disk
    distance = np.hypot(points[:, 0, 0] - cx, points[:, 0, 1] - cy)
    return bool((distance <= r + margin).all())


def test_result_is_in_the_image_frame_and_on_the_object(tiny_env: TinyModels) -> None:
    result = sketch(Image.fromarray(_disks(DISK)), _tiny(strokes=8))
    points = _points(result)
    assert result.image_size == (W, H)
    # Default width: the paper's 3 px on the 224 canvas, scaled to the padded square (side max(W, H)).
    assert result.width == pytest.approx(3.0 * W / 224)
    assert result.iterations_run == 6 and not result.stopped_early
    assert result.seed == 0 and result.winning_run == 0 and result.seed_losses == [result.loss]
    assert np.isfinite(result.loss)
    assert result.device == "cpu" and result.settings.strokes == 8
    assert set(result.timings) >= {"prepare_s", "load_models_s", "saliency_s", "optimise_s", "total_s"}
    # The saliency sampler starts strokes on the disk's edge, in image px (a missing un-padding would move them
    # 80 px down, a missing scale would shrink them towards the origin).
    assert _starts_on(points, DISK, margin=6.0)
    cx, cy, r = DISK
    lo, hi = points.reshape(-1, 2).min(axis=0), points.reshape(-1, 2).max(axis=0)
    overlap_x = min(hi[0], cx + r) - max(lo[0], cx - r)
    overlap_y = min(hi[1], cy + r) - max(lo[1], cy - r)
    assert overlap_x > r and overlap_y > r
    assert (lo > [cx - 2.5 * r, cy - 2.5 * r]).all() and (hi < [cx + 2.5 * r, cy + 2.5 * r]).all()


def test_path_and_pil_inputs_agree_and_width_is_kept(tiny_env: TinyModels, tmp_path: Path) -> None:
    path = tmp_path / "disk.png"
    Image.fromarray(_disks(DISK)).save(path)
    from_path = sketch(path, _tiny(width=2.5))
    from_pil = sketch(Image.open(path), _tiny(width=2.5))
    assert from_path.strokes == from_pil.strokes
    assert from_path.width == 2.5


def test_same_seed_same_strokes_other_seed_other_strokes(tiny_env: TinyModels) -> None:
    image = Image.fromarray(_disks(DISK))
    first = sketch(image, _tiny(seed=7))
    again = sketch(image, _tiny(seed=7))
    other = sketch(image, _tiny(seed=8))
    assert first.strokes == again.strokes and first.loss == again.loss
    assert first.seed == 7 and other.seed == 8
    assert first.strokes != other.strokes


def test_several_seeds_keep_the_best(tiny_env: TinyModels) -> None:
    result = sketch(Image.fromarray(_disks(DISK)), _tiny(seeds=2, seed=3))
    assert len(result.seed_losses) == 2
    assert result.loss == min(result.seed_losses)
    assert result.seed == 3 and result.winning_run == result.seed_losses.index(result.loss)
    assert result.provenance()["winning_run"] == result.winning_run and result.provenance()["seeds"] == 2


def test_the_stamped_values_given_back_reproduce_the_strokes(tiny_env: TinyModels) -> None:
    """Issue 9 item 5: base seed and seed count, as stamped, reproduce the result exactly on the CPU."""
    image = Image.fromarray(_disks(DISK))
    first = sketch(image, _tiny(seeds=3, seed=11, iterations=8))
    stamped = first.provenance()
    again = sketch(image, _tiny(seeds=stamped["seeds"], seed=stamped["seed"], iterations=8))
    assert again.strokes == first.strokes and again.winning_run == first.winning_run
    assert again.seed_losses == first.seed_losses


def test_every_random_stream_is_derived_separately() -> None:
    """Seed 0's initialisation and the augmentation plan used to draw the same stream (both seeded with 0)."""
    from clipasso_engine.seeding import augmentation_seed, initialisation_seed

    seeds = [augmentation_seed(b) for b in range(50)] + [initialisation_seed(b, r) for b in range(50) for r in range(4)]
    assert len(set(seeds)) == len(seeds)
    assert all(0 <= s < 2**63 for s in seeds)
    # The same numbers on every platform and run (a hash, not Python's salted hash()).
    assert initialisation_seed(0, 0) == initialisation_seed(0, 0) != initialisation_seed(0, 1)


@pytest.mark.parametrize(
    "failure",
    [
        MemoryError(),
        RuntimeError("MPS backend out of memory (MPS allocated: 8.00 GB)"),
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    ],
)
@pytest.mark.parametrize("stage", ["models", "saliency"])
def test_out_of_memory_in_any_stage_is_one_sentence(
    tiny_env: TinyModels, monkeypatch: pytest.MonkeyPatch, failure: Exception, stage: str
) -> None:
    """Issue 8 item 13: running out of memory while models load or during saliency used to end as internal."""
    import clipasso_engine.api as api_module

    def fail(*_args: object, **_kwargs: object) -> None:
        raise failure

    target = "loss_network" if stage == "models" else "saliency_probabilities"
    monkeypatch.setattr(api_module, target, fail)
    with pytest.raises(OutOfMemory) as caught:
        sketch(Image.fromarray(_disks(DISK)), _tiny())
    assert caught.value.code == "out_of_memory" and "--seeds 1" in str(caught.value)


def test_other_runtime_errors_stay_bugs(tiny_env: TinyModels, monkeypatch: pytest.MonkeyPatch) -> None:
    import clipasso_engine.api as api_module

    def fail(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(api_module, "saliency_probabilities", fail)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        sketch(Image.fromarray(_disks(DISK)), _tiny())


def test_mask_file_picks_the_object(tiny_env: TinyModels, tmp_path: Path) -> None:
    other = (70, 100, 28)
    image, mask = tmp_path / "two.png", tmp_path / "mask.png"
    Image.fromarray(_disks(other, DISK)).save(image)
    left_half_black = np.tile(np.arange(W) >= W // 2, (H, 1))
    Image.fromarray(np.where(left_half_black, 255, 0).astype(np.uint8)).save(mask)
    unmasked = _points(sketch(image, _tiny(strokes=8)))
    masked = _points(sketch(image, _tiny(strokes=8), mask=mask))
    # Without the mask both disks get strokes; with it, only the right one.
    assert np.any(unmasked[:, 0, 0] < W // 2) and np.any(unmasked[:, 0, 0] > W // 2)
    assert _starts_on(masked, DISK, margin=8.0)
    assert not np.any(masked[:, :, 0] < W // 2 - 20)


def test_alpha_channel_is_the_default_mask(tiny_env: TinyModels) -> None:
    rgba = _disks(DISK, (70, 100, 28), alpha=True)  # only the first disk is opaque
    points = _points(sketch(Image.fromarray(rgba, "RGBA"), _tiny()))
    assert _starts_on(points, DISK, margin=8.0)


def test_mask_of_the_wrong_size_fails_before_any_work(tiny_env: TinyModels, tmp_path: Path) -> None:
    image, mask = tmp_path / "disk.png", tmp_path / "mask.png"
    Image.fromarray(_disks(DISK)).save(image)
    Image.new("L", (W, H + 1), 255).save(mask)
    stages: list[str] = []
    with pytest.raises(MaskError, match=r"320×161 pixels but the image is 320×160"):
        sketch(image, _tiny(), mask=mask, on_status=lambda stage, message: stages.append(stage))
    assert stages == []


def test_progress_and_status_callbacks(tiny_env: TinyModels) -> None:
    reports: list[SketchProgress] = []
    stages: list[tuple[str, str]] = []
    result = sketch(
        Image.fromarray(_disks(DISK)),
        _tiny(iterations=5),
        on_progress=reports.append,
        on_status=lambda stage, message: stages.append((stage, message)),
        progress_interval_s=0.0,
    )
    assert [stage for stage, _ in stages] == ["loading_models", "saliency", "optimising"]
    assert all(message for _, message in stages)
    assert [p.iteration for p in reports] == [1, 2, 3, 4, 5]
    last = reports[-1]
    assert last.iterations == 5 and last.eta_s == 0.0 and last.elapsed_s > 0
    assert last.image_size == (W, H) and last.width == pytest.approx(result.width)
    best = last.best_points().numpy()
    assert best.shape == (6, 4, 2)
    # The last report's best points are the result's (evaluation at iteration 0 only), in image px; the result
    # writes them in importance order, source_index saying where each came from.
    np.testing.assert_allclose(best[result.source_index], np.asarray(result.strokes), atol=1e-9)


def test_cancel_stops_within_one_iteration(tiny_env: TinyModels) -> None:
    control = RunControl()
    seen: list[int] = []

    def on_progress(progress: SketchProgress) -> None:
        seen.append(progress.iteration)
        if progress.iteration == 2:
            control.cancel()

    with pytest.raises(Cancelled):
        sketch(
            Image.fromarray(_disks(DISK)),
            _tiny(iterations=50),
            control=control,
            on_progress=on_progress,
            progress_interval_s=0.0,
        )
    assert seen == [1, 2]


def test_stop_returns_the_best_so_far(tiny_env: TinyModels) -> None:
    control = RunControl()

    def on_progress(progress: SketchProgress) -> None:
        if progress.iteration == 3:
            control.stop()

    result = sketch(
        Image.fromarray(_disks(DISK)),
        _tiny(iterations=50),
        control=control,
        on_progress=on_progress,
        progress_interval_s=0.0,
    )
    assert result.stopped_early and result.iterations_run == 3
    assert _starts_on(_points(result), DISK, margin=6.0)


@pytest.mark.parametrize("request_", ["cancel", "stop"])
def test_cancel_or_stop_before_the_optimisation_is_a_cancel(tiny_env: TinyModels, request_: str) -> None:
    control = RunControl()
    getattr(control, request_)()
    progress: list[SketchProgress] = []
    with pytest.raises(Cancelled):
        sketch(Image.fromarray(_disks(DISK)), _tiny(), control=control, on_progress=progress.append)
    assert progress == []


def test_result_dict_and_svg_share_the_provenance(tiny_env: TinyModels) -> None:
    result = sketch(Image.fromarray(_disks(DISK)), _tiny())
    facts = result.to_dict()
    for key in ("strokes", "width", "image_size", "seed", "loss", "iterations_run", "stopped_early"):
        assert key in facts
    assert facts["image_size"] == [W, H] and facts["settings"]["strokes"] == 6
    svg = result.to_svg()
    assert 'viewBox="0 0 320 160"' in svg and svg.count("<path ") == 6
    assert f'"loss":{result.loss!r}' in svg.replace(" ", "")


def test_the_package_exports_the_api() -> None:
    import clipasso_engine

    assert clipasso_engine.sketch is sketch and clipasso_engine.SketchResult is SketchResult
    assert clipasso_engine.RunControl is RunControl


def test_width_in_pixels_or_as_a_fraction_of_the_longer_side(tmp_path: Path) -> None:
    from clipasso_engine.api import output_width
    from clipasso_engine.image_io import prepare_image

    path = tmp_path / "wide.png"
    Image.new("RGB", (320, 160), "white").save(path)
    prepared = prepare_image(path)
    assert output_width(SketchSettings(), prepared) == pytest.approx(3 / 224 * 320)
    assert output_width(SketchSettings(width=7.0), prepared) == 7.0
    assert output_width(SketchSettings(width_fraction=0.05), prepared) == pytest.approx(16.0)
    with pytest.raises(SettingsError, match="not both"):
        SketchSettings(width=7.0, width_fraction=0.05)
