"""The fast preset's convergence per precision, paired by seed: the measure behind the paired test's tolerance.

    python benchmarks/precision_convergence.py [--seeds 24] [--variants fp32,bf16,bf16+conv1,fp16-unscaled]

Each seed runs the rendered-target check of ``tests/test_presets.py`` (plan seed s, noise seed 1 + s, the tiny loss
network of ``tests/tiny_models.py``) once per variant, and the script prints each variant's error ratios (after /
before), their mean and spread, and the paired difference to fp32 with its 95 % interval. Variants:
- ``fp32``, ``bf16``: the engine's paths;
- ``bf16+conv1``, ``bf16+stem``: bf16 with those convolutions in fp32 (``bf16_islands.Fp32Island``), not shipped;
- ``fp16-unscaled``: a deliberately broken path, fp16 without its loss scale (its gradients underflow).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the engine, when it is not installed
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bf16_islands import Fp32Island, keep_in_fp32
from convergence import rendered_target_convergence
from tiny_models import build_tiny_models

from clipasso_engine import optimize
from clipasso_engine.config import preset_settings
from clipasso_engine.loss_network import LossNetwork, load_loss_network

#: Under bf16: which parts of the tower each variant keeps in fp32 (``bf16`` is the engine's own choice).
ISLANDS: dict[str, tuple[str, ...]] = {"bf16": (), "bf16+conv1": ("conv1",), "bf16+stem": ("conv1", "conv2", "conv3")}


def ratio(network: LossNetwork, islands: dict[str, Fp32Island], seed: int, variant: str) -> float:
    precision = "fp16" if variant == "fp16-unscaled" else variant.partition("+")[0]
    settings = preset_settings("fast").replace(seed=seed, precision=precision)
    kept = ISLANDS.get(variant, ())
    for name, island in islands.items():
        island.enabled = name in kept
    scale = optimize.loss_scale
    if variant == "fp16-unscaled":
        optimize.loss_scale = lambda autocast: 1.0  # type: ignore[assignment]
    try:
        return rendered_target_convergence(network, settings, noise_seed=1 + seed).ratio
    finally:
        optimize.loss_scale = scale
        for island in islands.values():
            island.enabled = False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=24, help="how many seeds")
    parser.add_argument("--first", type=int, default=0, help="the first seed")
    parser.add_argument("--variants", default="fp32,bf16,bf16+conv1,fp16-unscaled")
    args = parser.parse_args()
    torch.set_num_threads(1)  # tiny models run fastest on one thread (tests/conftest.py)
    variants = args.variants.split(",")
    with tempfile.TemporaryDirectory() as folder:
        network = load_loss_network(build_tiny_models(Path(folder)).settings(), torch.device("cpu"))
        names = sorted({name for parts in ISLANDS.values() for name in parts})
        islands = {name: keep_in_fp32(network.visual, name) for name in names}
        table: dict[str, list[float]] = {v: [] for v in variants}
        print("| seed | " + " | ".join(variants) + " |")
        print("|---|" + "---|" * len(variants))
        for seed in range(args.first, args.first + args.seeds):
            for v in variants:
                table[v].append(ratio(network, islands, seed, v))
            print(f"| {seed} | " + " | ".join(f"{table[v][-1]:.3f}" for v in variants) + " |", flush=True)
    print("\n| variant | mean ratio | sd | paired difference to fp32 (sd; 95 % interval of the mean) |")
    print("|---|---|---|---|")
    for v in variants:
        values = table[v]
        line = f"| {v} | {statistics.fmean(values):.3f} | {statistics.stdev(values):.3f} |"
        if v != "fp32" and "fp32" in table:
            differences = [a - b for a, b in zip(values, table["fp32"], strict=True)]
            mean, sd = statistics.fmean(differences), statistics.stdev(differences)
            half = 1.96 * sd / len(differences) ** 0.5
            line += f" {mean:+.3f} (sd {sd:.3f}; {mean - half:+.3f}..{mean + half:+.3f}) |"
        else:
            line += " – |"
        print(line)


if __name__ == "__main__":
    main()
