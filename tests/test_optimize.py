"""The optimisation loop: equivalence with a plain per-seed loop, best-iteration selection, gradients, convergence,
cancel and stop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from tiny_models import TinyModels

from clipasso_engine.augment import apply_augmentations, draw_augmentations
from clipasso_engine.config import SketchSettings
from clipasso_engine.errors import Cancelled, ModelConfigError
from clipasso_engine.loss_network import LossNetwork, load_loss_network
from clipasso_engine.losses import clip_pair_losses
from clipasso_engine.normalize import clip_normalize
from clipasso_engine.optimize import (
    Progress,
    RunControl,
    autocast_context,
    batch_losses,
    optimise_strokes,
    sketch_images,
)
from clipasso_engine.render import render
from clipasso_engine.selection import SeedSelection

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def network(tiny_models: TinyModels) -> LossNetwork:
    return load_loss_network(tiny_models.settings(), CPU)


def scene(seed: int, strokes: int = 6) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    start = 40 + 144 * torch.rand(strokes, 1, 2, generator=generator)
    steps = (torch.rand(strokes, 3, 2, generator=generator) - 0.5) * 60
    return torch.cat([start, start + steps.cumsum(dim=1)], dim=1)


def target_image(points: torch.Tensor) -> torch.Tensor:
    return sketch_images(points.unsqueeze(0), 3.0)[0].detach().clone()


@dataclass
class PlainStep:
    points: torch.Tensor  # (N, 4, 2) before the step
    loss: float
    gradient: torch.Tensor


def plain_reference_loop(
    initial: torch.Tensor, target: torch.Tensor, network: LossNetwork, settings: SketchSettings, plan_seed: int
) -> tuple[list[float], torch.Tensor, list[list[PlainStep]]]:
    """The method written plainly: one seed at a time, target features recomputed each time, fp32.

    Returns each seed's best evaluation loss, the best seed's scored points, and each seed's steps.
    """
    plan = draw_augmentations(plan_seed, settings.iterations, settings.augmentations)
    if settings.augmentation_pool:
        plan = plan.first(settings.augmentation_pool)
    best_losses, best_points, traces = [], [], []
    for k in range(initial.shape[0]):
        points = initial[k].clone().requires_grad_(True)
        optimiser = torch.optim.Adam([points], lr=settings.lr)
        best, best_p, trace = float("inf"), points.detach().clone(), []
        for step in range(settings.iterations):
            sketch = render(points, (224, 224), stroke_width=3.0).expand(3, -1, -1).unsqueeze(0)
            grids = plan.grids(step)
            sketches = torch.cat([sketch, apply_augmentations(sketch, grids)])
            targets = torch.cat([target.unsqueeze(0), apply_augmentations(target.unsqueeze(0), grids)])
            pairs = clip_pair_losses(network(clip_normalize(sketches)), network(clip_normalize(targets)))
            loss = pairs.mean()
            if step % settings.eval_every == 0:
                with torch.no_grad():
                    scored = clip_pair_losses(network(clip_normalize(sketch)), network(clip_normalize(target[None])))
                if float(scored) < best:
                    best, best_p = float(scored), points.detach().clone()
            optimiser.zero_grad()
            loss.backward()
            assert points.grad is not None
            trace.append(PlainStep(points.detach().clone(), float(loss.detach()), points.grad.detach().clone()))
            optimiser.step()
        best_losses.append(best)
        best_points.append(best_p)
        traces.append(trace)
    winner = min(range(len(best_losses)), key=best_losses.__getitem__)
    return best_losses, best_points[winner], traces


@pytest.mark.parametrize("pool", [0, 2], ids=["fresh-augmentations", "pooled-targets"])
def test_batched_loop_equals_plain_reference_loop(network: LossNetwork, pool: int) -> None:
    # fp32 like the plain loop: this compares the batching, not the precision (test_precision.py compares that).
    settings = SketchSettings(
        iterations=6,
        seeds=2,
        augmentations=2,
        eval_every=2,
        early_stop_delta=0.0,
        augmentation_pool=pool,
        precision="fp32",
    )
    truth = scene(1)
    initial = torch.stack(
        [truth + 12 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(s)) for s in (5, 6)]
    )
    target = target_image(truth)
    expected_losses, expected_points, traces = plain_reference_loop(initial, target, network, settings, plan_seed=3)

    # Step by step, on the very points the plain loop had: the batched computation (all seeds in one batch,
    # clean target cached, augmented targets shared or pooled) gives the same losses and gradients.
    plan = draw_augmentations(3, settings.iterations, settings.augmentations)
    pooled = plan.first(pool) if pool else plan
    with torch.no_grad():
        clean_target = network(clip_normalize(target[None]))
    for step in range(settings.iterations):
        points = torch.stack([trace[step].points for trace in traces]).requires_grad_(True)
        per_seed, _ = batch_losses(points, target, clean_target, network, pooled.grids(step), settings, 3.0)
        per_seed.sum().backward()
        assert points.grad is not None
        for k, trace in enumerate(traces):
            assert float(per_seed[k].detach()) == pytest.approx(trace[step].loss, rel=1e-5), (step, k)
            cosine = F.cosine_similarity(points.grad[k].flatten(), trace[step].gradient.flatten(), dim=0)
            assert float(cosine) > 0.9999, (step, k)
            torch.testing.assert_close(points.grad[k].norm(), trace[step].gradient.norm(), rtol=1e-3, atol=0)

    # End to end: Adam normalises every gradient component, so on near-flat components float rounding (batched and
    # single convolutions round differently, ~1e-6) moves points by hundredths of a pixel per step (lr is 1 px).
    seen: list[float] = []
    result = optimise_strokes(
        initial,
        target,
        network,
        settings,
        plan,
        width=3.0,
        on_progress=lambda p: seen.append(p.loss),
        progress_interval_s=0.0,
    )
    # Thread count and batch shape change that rounding, so allow 1% in the best losses and half a pixel.
    torch.testing.assert_close(torch.tensor(result.seed_losses), torch.tensor(expected_losses), rtol=1e-2, atol=0)
    torch.testing.assert_close(result.points, expected_points, rtol=0, atol=0.5)
    # Progress reports the leading seed's training loss at every iteration: the plain loop's loss of one seed.
    assert len(seen) == settings.iterations
    for step, loss in enumerate(seen):
        assert any(loss == pytest.approx(trace[step].loss, rel=5e-3) for trace in traces), (step, loss)


class RecordSpy:
    """Wraps ``SeedSelection.record`` to keep every evaluation the loop scored: its losses and its points."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.losses: list[torch.Tensor] = []
        self.points: list[torch.Tensor] = []
        original = SeedSelection.record

        def record(selection: SeedSelection, losses: torch.Tensor, points: torch.Tensor) -> None:
            self.losses.append(losses.detach().clone())
            self.points.append(points.detach().clone())
            original(selection, losses, points)

        monkeypatch.setattr(SeedSelection, "record", record)


def test_best_iteration_returns_exactly_the_scored_points(
    network: LossNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    # lr 6 overshoots: the evaluation losses go down and up again, so keeping the best differs from keeping the last.
    settings = SketchSettings(
        iterations=25, seeds=2, augmentations=1, eval_every=5, early_stop_delta=0.0, lr=6.0, precision="fp32"
    )
    truth = scene(2)
    target = target_image(truth)
    initial = torch.stack(
        [truth + 15 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(s)) for s in (1, 2)]
    )
    plan = draw_augmentations(0, settings.iterations, settings.augmentations)
    spy = RecordSpy(monkeypatch)
    result = optimise_strokes(initial, target, network, settings, plan, width=3.0)
    evaluations = torch.stack(spy.losses)  # (evaluations, seeds)
    assert evaluations.shape == (5, 2)  # iterations 0, 5, 10, 15, 20 were scored
    winner = result.seed_index
    best_at = int(torch.argmin(evaluations[:, winner]))
    assert best_at != evaluations.shape[0] - 1, "the losses must not end at their minimum for this test to tell"
    assert float(evaluations[-1, winner]) > float(evaluations[best_at, winner]) + 0.1
    # Exactly the points that were scored at the best evaluation, not the last ones nor the ones after the step.
    assert torch.equal(result.points, spy.points[best_at][winner])
    assert result.best_loss == float(evaluations[best_at, winner]) == float(evaluations.min())
    assert result.seed_losses == evaluations.min(dim=0).values.tolist()
    with torch.no_grad():
        clean_target = network(clip_normalize(target[None]))
        _, rescored = batch_losses(result.points[None], target, clean_target, network, plan.grids(0)[:0], settings, 3.0)
    assert float(rescored[0]) == pytest.approx(result.best_loss, rel=1e-5)
    # best_so_far is the running minimum over seeds after each evaluation.
    running = torch.cummin(evaluations.min(dim=1).values, dim=0).values
    assert result.best_so_far == running.tolist()


def test_default_early_stop_ends_a_flat_run_at_its_third_evaluation(network: LossNetwork) -> None:
    """The default delta (1e-5): points that cannot move score the same at every evaluation: new best at iteration
    0, flat at 10 (flag set), flat at 20: stop there, after 21 iterations of the 200."""
    settings = SketchSettings(iterations=200, seeds=1, augmentations=1, lr=1e-12)
    assert settings.early_stop_delta == 1e-5 and settings.eval_every == 10 and settings.precision == "auto"
    target = target_image(scene(1))
    plan = draw_augmentations(0, settings.iterations, settings.augmentations)
    result = optimise_strokes(scene(2)[None], target, network, settings, plan, width=3.0, progress_interval_s=0.0)
    assert result.stopped_early and result.iterations_run == 21
    assert len(result.best_so_far) == 3
    # The same run with delta 0 goes on to the end.
    full = optimise_strokes(scene(2)[None], target, network, settings.replace(early_stop_delta=0.0), plan, width=3.0)
    assert not full.stopped_early and full.iterations_run == 200


def test_a_seed_that_met_the_early_stop_rule_keeps_its_points(network: LossNetwork) -> None:
    """Two seeds: the frozen one (flat from the start, lr is tiny for both) stops moving; the run ends when all do."""
    settings = SketchSettings(iterations=60, seeds=2, augmentations=0, lr=1e-12, eval_every=5)
    target = target_image(scene(1))
    plan = draw_augmentations(0, settings.iterations, 0)
    initial = torch.stack([scene(2), scene(3)])
    result = optimise_strokes(initial, target, network, settings, plan, width=3.0, progress_interval_s=0.0)
    assert result.stopped_early and result.iterations_run == 11
    assert torch.equal(result.points, initial[result.seed_index])


def test_every_control_point_gets_a_finite_gradient(network: LossNetwork) -> None:
    settings = SketchSettings(augmentations=2)
    points = torch.stack([scene(3), scene(4)]).requires_grad_(True)
    target = target_image(scene(5))
    plan = draw_augmentations(0, 1, settings.augmentations)
    with torch.no_grad():
        clean_target = network(clip_normalize(target[None]))
    per_seed, clean = batch_losses(points, target, clean_target, network, plan.grids(0), settings, 3.0)
    assert per_seed.shape == clean.shape == (2,)
    per_seed.sum().backward()
    assert points.grad is not None
    assert torch.isfinite(points.grad).all()
    assert (points.grad.abs().sum(dim=-1) > 0).all(), "some control point got no gradient"


def test_rendered_target_pulls_strokes_towards_it(network: LossNetwork) -> None:
    """Convergence: starting from jittered strokes, the loop brings the sketch clearly closer to the target."""
    truth = scene(7, strokes=5)
    target = target_image(truth)
    initial = (truth + 10 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(9)))[None]
    settings = SketchSettings(iterations=80, seeds=1, augmentations=4, eval_every=1, early_stop_delta=0.0)
    plan = draw_augmentations(0, settings.iterations, settings.augmentations)
    result = optimise_strokes(initial, target, network, settings, plan, width=3.0)

    def image_error(points: torch.Tensor) -> float:
        return float((target_image(points) - target).abs().mean())

    before, after = image_error(initial[0]), image_error(result.points)
    # Measured: the mean pixel error drops from 0.029 to 0.016 and the loss from 2.47 to 0.87.
    assert after < 0.7 * before, (before, after)
    assert result.best_so_far[-1] < 0.5 * result.best_so_far[0]


def test_cancel_raises_and_stop_returns_best_so_far(network: LossNetwork) -> None:
    settings = SketchSettings(iterations=1000, seeds=1, augmentations=0, early_stop_delta=0.0)
    target = target_image(scene(1))
    initial = scene(2)[None]
    plan = draw_augmentations(0, settings.iterations, 0)

    def stop_after(control: RunControl, at: int) -> Callable[[Progress], None]:
        def on_progress(progress: Progress) -> None:
            if progress.iteration >= at:
                control.stop()

        return on_progress

    control = RunControl()
    result = optimise_strokes(
        initial,
        target,
        network,
        settings,
        plan,
        width=3.0,
        control=control,
        on_progress=stop_after(control, 3),
        progress_interval_s=0.0,
    )
    assert result.stopped_early and result.iterations_run == 3
    assert torch.isfinite(result.points).all()

    cancelling = RunControl()
    cancelling.cancel()
    with pytest.raises(Cancelled):
        optimise_strokes(initial, target, network, settings, plan, width=3.0, control=cancelling)


@pytest.mark.parametrize(("pool", "total"), [(3, 4), (0, 1)])  # the clean target, then each pooled step's target
def test_setup_progress_reports_every_target_pass(network: LossNetwork, pool: int, total: int) -> None:
    settings = SketchSettings(iterations=5, seeds=1, augmentations=1, augmentation_pool=pool, precision="fp32")
    plan = draw_augmentations(0, settings.iterations, 1)
    reports: list[tuple[int, int]] = []
    target = target_image(scene(1))
    optimise_strokes(
        scene(2)[None], target, network, settings, plan, width=3.0, on_setup=lambda d, t: reports.append((d, t))
    )
    assert reports == [(k, total) for k in range(total + 1)]


@pytest.mark.parametrize("request_name", ["cancel", "stop"])
def test_cancel_or_stop_during_setup_ends_before_the_remaining_passes(network: LossNetwork, request_name: str) -> None:
    """Before the first iteration there are no scored strokes, so a stop is a cancel too."""
    settings = SketchSettings(iterations=5, seeds=1, augmentations=1, augmentation_pool=8)
    plan = draw_augmentations(0, settings.iterations, 1)
    control = RunControl()
    reports: list[int] = []

    def on_setup(done: int, total: int) -> None:
        reports.append(done)
        if done == 2:
            getattr(control, request_name)()

    with pytest.raises(Cancelled):
        optimise_strokes(
            scene(2)[None],
            target_image(scene(1)),
            network,
            settings,
            plan,
            width=3.0,
            control=control,
            on_setup=on_setup,
        )
    assert reports == [0, 1, 2]


class PoisonedNetwork:
    """The loss network, but the sketch branch (the one with gradients) returns NaN activations; counts its calls."""

    def __init__(self, network: LossNetwork) -> None:
        self.network = network
        self.sketch_calls = 0

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.network(images)
        if not torch.is_grad_enabled():
            return features
        self.sketch_calls += 1
        return {name: value * float("nan") for name, value in features.items()}


def run_poisoned(network: LossNetwork, device: torch.device, interval: float) -> int:
    """Run a poisoned network; return how many sketch passes ran before the run ended with the one sentence."""
    settings = SketchSettings(iterations=6, seeds=2, augmentations=1, precision="fp32")
    plan = draw_augmentations(0, settings.iterations, 1).to(device)
    poisoned = PoisonedNetwork(network)
    initial = torch.stack([scene(2), scene(3)]).to(device)
    with pytest.raises(ModelConfigError, match=r"NaN or infinite .* --precision fp32\.$"):
        optimise_strokes(
            initial,
            target_image(scene(1)).to(device),
            poisoned,
            settings,
            plan,
            width=3.0,
            progress_interval_s=interval,
        )
    return poisoned.sketch_calls


@pytest.mark.parametrize("interval", [0.0, 1e9])
def test_a_non_finite_loss_ends_the_run_at_once_on_the_cpu(network: LossNetwork, interval: float) -> None:
    """On the CPU a device read costs nothing, so the loop checks every iteration, progress reports or not."""
    assert run_poisoned(network, CPU, interval) == 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_non_finite_loss_ends_the_run_at_the_next_sync_point_on_cuda(tiny_models: TinyModels) -> None:
    """On a GPU it is checked where the loop reads the device anyway: the next progress report, or the result."""
    network = load_loss_network(tiny_models.settings(), torch.device("cuda"))
    assert run_poisoned(network, torch.device("cuda"), 0.0) == 1
    assert run_poisoned(network, torch.device("cuda"), 1e9) == 6


def test_non_finite_start_points_are_refused(network: LossNetwork) -> None:
    settings = SketchSettings(iterations=3, seeds=1, augmentations=0, precision="fp32")
    initial = scene(2)[None].clone()
    initial[0, 1, 2, 0] = float("inf")
    with pytest.raises(ValueError, match="points must be finite"):
        optimise_strokes(
            initial,
            target_image(scene(1)),
            network,
            settings,
            draw_augmentations(0, 3, 0),
            width=3.0,
            progress_interval_s=0.0,
        )


def _accelerator() -> torch.device | None:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return None


@pytest.mark.gpu
@pytest.mark.skipif(_accelerator() is None, reason="needs a CUDA or MPS device")
def test_mixed_precision_gives_the_same_losses_and_gradients(tiny_models: TinyModels) -> None:
    """On GPU the loss network runs under autocast: losses within 2% and gradients aligned with fp32's."""
    device = _accelerator()
    assert device is not None
    network = load_loss_network(tiny_models.settings(), device)
    target = target_image(scene(5)).to(device)
    grids = draw_augmentations(0, 1, 4).to(device).grids(0)
    results = {}
    for precision in ("fp32", "auto"):
        settings = SketchSettings(precision=precision)
        autocast = autocast_context(device, precision)
        points = torch.stack([scene(3), scene(4)]).to(device).requires_grad_(True)
        with torch.no_grad(), autocast:
            clean_target = network(clip_normalize(target[None]))
        per_seed, _ = batch_losses(points, target, clean_target, network, grids, settings, 3.0, autocast)
        per_seed.sum().backward()
        assert points.grad is not None
        results[precision] = (per_seed.detach().cpu(), points.grad.cpu())
    torch.testing.assert_close(results["auto"][0], results["fp32"][0], rtol=0.02, atol=0)
    cosine = F.cosine_similarity(results["auto"][1].flatten(), results["fp32"][1].flatten(), dim=0)
    assert float(cosine) > 0.99


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (torch's sync debug mode)")
def test_no_host_synchronisation_inside_the_loop(tiny_models: TinyModels) -> None:
    """With progress off, a whole run synchronises once: the single transfer of the result's numbers."""
    import warnings

    device = torch.device("cuda")
    network = load_loss_network(tiny_models.settings(), device)
    target = target_image(scene(5)).to(device)
    initial = torch.stack([scene(3), scene(4)]).to(device)
    settings = SketchSettings(iterations=12, seeds=2, augmentations=2)
    plan = draw_augmentations(0, settings.iterations, settings.augmentations).to(device)
    optimise_strokes(initial, target, network, settings.replace(iterations=1), plan, width=3.0)  # warm-up
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            optimise_strokes(initial, target, network, settings, plan, width=3.0, progress_interval_s=1e9)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) == 1, [str(w.message) for w in syncs]
