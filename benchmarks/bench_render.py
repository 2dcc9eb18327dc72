"""Time the stroke renderer, forward + backward, and print a markdown table beside the spec's diffvg numbers.

    python benchmarks/bench_render.py [--device cpu|cuda|mps] [--repeats 30] [--threads 2] [--json out.json]

Strokes follow the spec's generator (``shared/spec/renderer.md``): a start point uniform in [20, S − 20]², then
three control points by a random walk of U(−40, 40) px steps per axis, clipped to [4, S − 4]. The reported time
is the median over ``--repeats`` runs of render + ``image.sum().backward()``, after warm-up runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from clipasso_engine.render import render

#: (strokes, canvas side) -> ms from shared/spec/renderer.md: diffvg 2×2 samples (CLIPasso), diffvg prefilter,
#: the throw-away prototype; and the issue's target where it sets one.
SPEC_MS: dict[tuple[int, int], tuple[float, float, float]] = {
    (16, 224): (271, 57, 6.1),
    (64, 224): (470, 74, 24),
    (256, 224): (1349, 198, 141),
    (16, 512): (1146, 162, 14.8),
    (256, 512): (6875, 772, 775),
}
TARGET_MS: dict[tuple[int, int, int], float] = {(1, 16, 224): 8, (1, 64, 224): 25, (1, 256, 512): 400}
#: (batch, strokes, canvas side): the spec's rows, the optimiser's batches (seeds), and a big canvas (cost follows ink).
CASES = [
    (1, 16, 224),
    (2, 16, 224),
    (3, 16, 224),
    (1, 64, 224),
    (1, 256, 224),
    (1, 16, 512),
    (1, 256, 512),
    (1, 16, 1024),
]
CASES_LARGE = [(1, 1000, 224), (1, 2048, 1024)]


def make_strokes(batch: int, strokes: int, side: int, seed: int, device: torch.device) -> torch.Tensor:
    """The spec's random scene: (batch, strokes, 4, 2) control points in pixels."""
    generator = torch.Generator().manual_seed(seed)
    start = torch.rand(batch, strokes, 1, 2, generator=generator) * (side - 40) + 20
    walk = (torch.rand(batch, strokes, 3, 2, generator=generator) * 80 - 40).cumsum(dim=2)
    return torch.cat((start, start + walk), dim=2).clamp(4, side - 4).to(device)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_ms(step: Callable[[], None], device: torch.device, repeats: int, warmup: int = 3) -> float:
    """Median wall time of ``step`` in ms, the device synchronised around each run."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        step()
        _synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def matmul_gflops(device: torch.device) -> float:
    """Speed of a 2048³ fp32 matmul: the spec's idle-machine yardstick (~330 GFLOP/s on its 2-core CPU)."""
    a = torch.randn(2048, 2048, device=device)

    def step() -> None:
        torch.mm(a, a)

    ms = time_ms(step, device, repeats=5, warmup=1)
    return 2 * 2048**3 / (ms * 1e-3) / 1e9


def bench_case(batch: int, strokes: int, side: int, device: torch.device, repeats: int) -> float:
    points = make_strokes(batch, strokes, side, seed=0, device=device)

    def step() -> None:
        p = points.clone().requires_grad_()
        render(p, (side, side), stroke_width=3.0).sum().backward()

    # Big cases take long enough that fewer runs give as steady a median.
    return time_ms(step, device, repeats if batch * strokes * side < 300_000 else max(3, repeats // 5))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default cpu)")
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per case (default 30)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2, as in the spec)")
    parser.add_argument("--large", action="store_true", help="also time 1000 strokes at 224² and 2048 at 1024²")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH ('-': stdout)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gflops = matmul_gflops(device)
    rows = []
    for batch, strokes, side in CASES + (CASES_LARGE if args.large else []):
        ms = bench_case(batch, strokes, side, device, args.repeats)
        diffvg, prefilter, prototype = SPEC_MS.get((strokes, side), (None, None, None)) if batch == 1 else (None,) * 3
        target = TARGET_MS.get((batch, strokes, side))
        rows.append(
            {
                "batch": batch,
                "strokes": strokes,
                "canvas": side,
                "ms": round(ms, 2),
                "target_ms": target,
                "diffvg_ms": diffvg,
                "diffvg_prefilter_ms": prefilter,
                "prototype_ms": prototype,
            }
        )

    def cell(value: float | None) -> str:
        return "" if value is None else f"{value:g}"

    print(
        f"Renderer forward + backward, median ms, device {device}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}"
    )
    print(f"2048³ fp32 matmul: {gflops:.0f} GFLOP/s (the spec's idle 2-core CPU: ~330; lower means a busy machine)")
    print("(diffvg and prototype columns: shared/spec/renderer.md, measured on the project's 2-core CPU)\n")
    print("| batch | strokes | canvas | ours (ms) | target | diffvg 2×2 | diffvg prefilter | prototype |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['batch']} | {r['strokes']} | {r['canvas']}² | {r['ms']:.2f} | {cell(r['target_ms'])} | "
            f"{cell(r['diffvg_ms'])} | {cell(r['diffvg_prefilter_ms'])} | {cell(r['prototype_ms'])} |"
        )
    if args.json:
        report = {
            "device": str(device),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "matmul_gflops": round(gflops, 1),
            "rows": rows,
        }
        text = json.dumps(report, indent=1)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
