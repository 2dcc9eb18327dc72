"""bf16 against fp32 on the full-size loss network: where the error comes from, and what an fp32 island costs.

    python benchmarks/bf16_islands.py error [--photos chelsea,astronaut,...] [--strokes 3,4,5]
    python benchmarks/bf16_islands.py time [--rounds 7] [--threads 2]

The network is the one ``tests/test_precision.py`` uses: RN101 as the product runs it (BatchNorms folded,
channels-last), random weights with the ``bn3`` scales set to 1 (spec §10). A variant keeps some parts of the
forward (``conv1`` ... ``conv3`` of the stem, ``attnpool``) in fp32 under bf16 autocast (``Fp32Island``).

``error`` renders each stroke set, runs the same 1 clean + 4 augmented pairs in fp32 and in each variant, and
prints per variant the worst relative pair-loss difference, the worst difference of each loss term (as a share of
the pair's total loss) and the control-point gradient cosine.

``time`` measures the sketch side's forward + backward of 5 images (the issue's batch) against precomputed target
features, as a run's iteration does. It interleaves the variants round by round in one process, keeps each one's
minimum, and prints the ratio to plain bf16. The machine is shared: read the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the engine, when it is not installed

from test_optimize import scene
from test_precision import full_size_loss_network, photo

from clipasso_engine.augment import apply_augmentations, draw_augmentations
from clipasso_engine.loss_network import LossNetwork
from clipasso_engine.losses import geometric_loss, semantic_loss
from clipasso_engine.normalize import clip_normalize
from clipasso_engine.precision import flush_denormals
from clipasso_engine.render import render


class Fp32Island(torch.nn.Module):
    """Runs the wrapped module in fp32 (input cast up, autocast off) inside an autocast region, while enabled."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module
        self.enabled = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.enabled and torch.is_autocast_enabled(x.device.type):
            with torch.autocast(x.device.type, enabled=False):
                return self.module(x.float())  # type: ignore[no-any-return]
        return self.module(x)  # type: ignore[no-any-return]


def keep_in_fp32(visual: torch.nn.Module, name: str) -> Fp32Island:
    """Wrap ``visual``'s submodule ``name`` (dotted) in an :class:`Fp32Island`, once."""
    parent_name, _, child = name.rpartition(".")
    parent = visual.get_submodule(parent_name)
    module = getattr(parent, child)
    if not isinstance(module, Fp32Island):
        module = Fp32Island(module)
        setattr(parent, child, module)
    return module


STEM = frozenset({"conv1", "conv2", "conv3"})
#: name -> the submodules of the tower kept in fp32 under bf16 autocast (None: the fp32 reference, no autocast).
VARIANTS: dict[str, frozenset[str] | None] = {
    "fp32": None,
    "bf16": frozenset(),
    "bf16+attnpool": frozenset({"attnpool"}),
    "bf16+conv1": frozenset({"conv1"}),
    "bf16+conv1+attnpool": frozenset({"conv1", "attnpool"}),
    "bf16+conv1+conv2": frozenset({"conv1", "conv2"}),
    "bf16+stem": STEM,
    "bf16+stem+attnpool": STEM | {"attnpool"},
}


Net = tuple[LossNetwork, dict[str, Fp32Island]]


def network_with_islands() -> Net:
    network = full_size_loss_network()
    names = set().union(*(parts for parts in VARIANTS.values() if parts))
    return network, {name: keep_in_fp32(network.visual, name) for name in sorted(names)}


def select(islands: dict[str, Fp32Island], variant: frozenset[str] | None) -> None:
    for name, island in islands.items():
        island.enabled = name in (variant or ())


def features(net: Net, variant: frozenset[str] | None, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    network, islands = net
    select(islands, variant)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant is not None):
        return network(clip_normalize(targets))


def terms(
    net: Net, variant: frozenset[str] | None, images: torch.Tensor, target: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Each pair's loss terms (layer2, layer3, 0.1·semantic) and the gradient of the mean total w.r.t. ``images``."""
    network, islands = net
    select(islands, variant)
    images = images.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant is not None):
        sketch = network(clip_normalize(images))
    out = {
        "layer2": geometric_loss(sketch, target, ["layer2"], [1.0]),
        "layer3": geometric_loss(sketch, target, ["layer3"], [1.0]),
        "semantic": 0.1 * semantic_loss(sketch["embedding"], target["embedding"]),
    }
    sum(out.values()).mean().backward()  # type: ignore[union-attr]
    assert images.grad is not None
    return {k: v.detach() for k, v in out.items()}, images.grad


def point_gradient(images: torch.Tensor, points: torch.Tensor, image_gradient: torch.Tensor) -> torch.Tensor:
    (gradient,) = torch.autograd.grad(images, points, image_gradient, retain_graph=True)
    return gradient.flatten()


def error(args: argparse.Namespace) -> None:
    net = network_with_islands()
    grids = draw_augmentations(7, 1, 4).grids(0)
    worst: dict[str, dict[str, float]] = {name: {} for name in args.variants.split(",") if name != "fp32"}
    print("| photo | strokes | " + " | ".join(worst) + " |  (worst pair-loss error %, gradient cosine)")
    print("|---|---|" + "---|" * len(worst))
    with flush_denormals():
        for name in args.photos.split(","):
            target = photo(name)
            targets = torch.cat([target[None], apply_augmentations(target[None], grids)])
            for seed in (int(s) for s in args.strokes.split(",")):
                points = scene(seed, strokes=16).requires_grad_(True)
                sketch = render(points, (224, 224), stroke_width=3.0)[None, None].expand(-1, 3, -1, -1)
                images = torch.cat([sketch, apply_augmentations(sketch, grids)]).detach()
                reference, reference_grad = terms(net, None, images, features(net, None, targets))
                reference_total = sum(reference.values())
                # The points' gradient: chain the image gradient through the (fp32) renderer and augmentations.
                image_rows = torch.cat([sketch, apply_augmentations(sketch, grids)])
                reference_points = point_gradient(image_rows, points, reference_grad)
                cells = []
                for variant in worst:
                    parts = VARIANTS[variant]
                    values, grad = terms(net, parts, images, features(net, parts, targets))
                    total = sum(values.values())
                    relative = float(((total - reference_total) / reference_total).abs().max())  # type: ignore[operator]
                    gradient = point_gradient(image_rows, points, grad)
                    cosine = float(F.cosine_similarity(gradient, reference_points, dim=0))
                    row = worst[variant]
                    row["total"] = max(row.get("total", 0.0), relative)
                    row["cosine"] = min(row.get("cosine", 1.0), cosine)
                    for term in values:
                        share = float(((values[term] - reference[term]) / reference_total).abs().max())  # type: ignore[operator]
                        row[term] = max(row.get(term, 0.0), share)
                    cells.append(f"{100 * relative:.2f} % {cosine:.5f}")
                print(f"| {name} | {seed} | " + " | ".join(cells) + " |", flush=True)
    print("\nWorst over all pairs (% of the pair's total loss):")
    print("| variant | total | layer2 | layer3 | 0.1·semantic | min cosine |")
    print("|---|---|---|---|---|---|")
    for variant, row in worst.items():
        print(
            f"| {variant} | {100 * row['total']:.2f} | {100 * row['layer2']:.2f} | {100 * row['layer3']:.2f} "
            f"| {100 * row['semantic']:.2f} | {row['cosine']:.5f} |"
        )


def timing(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    net = network_with_islands()
    target = photo("chelsea")
    grids = draw_augmentations(7, 1, 4).grids(0)
    targets = torch.cat([target[None], apply_augmentations(target[None], grids)])
    sketch = render(scene(3, strokes=16), (224, 224), stroke_width=3.0)[None, None].expand(-1, 3, -1, -1)
    images = torch.cat([sketch, apply_augmentations(sketch, grids)]).detach()
    names = args.variants.split(",")
    best = {n: float("inf") for n in names}
    with flush_denormals():
        target_features = {n: features(net, VARIANTS[n], targets) for n in names}
        for n in names:  # warm-up: oneDNN builds its kernels on the first call of each shape and dtype
            terms(net, VARIANTS[n], images, target_features[n])
        for _ in range(args.rounds):
            for n in names:
                start = time.perf_counter()
                terms(net, VARIANTS[n], images, target_features[n])
                best[n] = min(best[n], time.perf_counter() - start)
    base = best["bf16"]
    print(f"forward + backward, batch 5, {args.threads} threads, min of {args.rounds}:")
    for n in names:
        print(f"  {n:24s} {best[n]:.3f} s  ×{best[n] / base:.3f} of plain bf16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser("error")
    e.add_argument("--photos", default="chelsea,astronaut,coffee,rocket,immunohistochemistry,hubble_deep_field")
    e.add_argument("--strokes", default="3,4,5", help="scene seeds of the 16-stroke sets")
    e.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names (fp32 is the reference)")
    t = sub.add_parser("time")
    t.add_argument("--rounds", type=int, default=7)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--variants", default="bf16,bf16+attnpool,bf16+layer4+attnpool,bf16+stem,fp32")
    args = parser.parse_args()
    error(args) if args.command == "error" else timing(args)


if __name__ == "__main__":
    main()
