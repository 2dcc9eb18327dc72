"""The loss network's precision policy: which autocast dtype, the fp16 loss scale, and denormal flushing (spec §4).

Only the loss network runs under autocast; the renderer, the augmentations, the losses (which cast features to
float) and Adam's state stay fp32. ``precision="auto"`` resolves to one concrete choice, which callers record:
- CUDA: bf16 where the selected GPU runs it natively (compute capability ≥ 8.0), else fp16 (emulated bf16 is slower);
- MPS: fp16;
- CPU: bf16 where the CPU has bf16 arithmetic (AVX512-BF16, AMX, Arm BF16: ``cpu_has_native_bf16``), else fp32
  (emulated bf16 is slower than fp32; ``precision="bf16"`` still asks for it, with a warning).
Measured on a 2-core AVX512-BF16 CPU (issue 11; ``benchmarks/bf16_islands.py``, ``precision_convergence.py``):
- speed: RN101's forward + backward at batch 5 is 1.9× faster in bf16 than in fp32;
- accuracy, full-size RN101 (random weights, bn3 scales 1), 6 photos × 3 stroke sets: pair losses within
  0.47-0.85 % of fp32's (the bar is 1 %), control-point gradient cosine ≥ 0.9997. Almost all of it is in the
  semantic term, whose 1 − cos is about 0.005 with random weights (far smaller than with trained CLIP weights);
- convergence, the fast preset on the tiny test models, 12 paired seeds: mean error ratio 0.262 against fp32's
  0.257, difference +0.004 (95 % interval -0.048..+0.056; an earlier 24 seeds: -0.011);
- fp32 islands were tried and not kept: the fp32 first convolution (0-2 % time) brought RN101's worst to 0.69 % but
  made the tiny network's 2.5 % (from 0.67 %); the fp32 stem (4-6 %) 0.45 %; the fp32 attention pool (17 %) 0.71 %.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

#: The concrete precisions ``resolve_precision`` returns.
PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
#: /proc/cpuinfo flags that mean native bf16 arithmetic (x86: "flags" line; Arm: "Features" line).
_NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})

logger = logging.getLogger("clipasso_engine")


def cuda_has_native_bf16(device: torch.device) -> bool:
    """Whether the selected CUDA device runs bf16 in hardware (not ``is_bf16_supported()``'s emulation)."""
    if torch.version.hip:
        return True  # every ROCm GPU torch supports has bf16 arithmetic
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8


def _linux_cpu_flags(path: Path = Path("/proc/cpuinfo")) -> set[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return set()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return flags


def _macos_has_feat_bf16() -> bool:
    try:
        out = subprocess.run(
            ["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.stdout.strip() == "1"


def _torch_reports_native_bf16() -> bool:
    """torch's own CPU probes (cpuinfo-based, any OS) where this torch has them; private, so looked up defensively."""
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        probe = getattr(torch.cpu, name, None)
        if probe is not None:
            with contextlib.suppress(Exception):
                if probe():
                    return True
    return False


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic instructions, detected from the hardware, never guessed from the OS."""
    if sys.platform.startswith("linux") and _linux_cpu_flags() & _NATIVE_BF16_FLAGS:
        return True
    if sys.platform == "darwin" and _macos_has_feat_bf16():
        return True
    return _torch_reports_native_bf16()


@functools.cache
def _warn_emulated_bf16() -> None:
    """Once per process: every run resolves its precision again."""
    logger.warning("This CPU has no bf16 arithmetic: --precision bf16 is emulated here and slower than fp32.")


def resolve_precision(device: torch.device, requested: str) -> str:
    """The concrete precision ("fp32", "bf16" or "fp16") that ``requested`` means on ``device``; record this one."""
    if requested in PRECISIONS:
        if requested == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
            _warn_emulated_bf16()
        return requested
    if requested != "auto":
        raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {requested!r}")
    if device.type == "cuda":
        return "bf16" if cuda_has_native_bf16(device) else "fp16"
    if device.type == "mps":
        return "fp16"
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"  # a CPU without bf16 arithmetic, and any other device


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager[object]:
    """The context to run the loss network in: autocast for bf16/fp16, nothing for fp32 (``precision`` may be auto)."""
    resolved = resolve_precision(device, precision)
    if resolved == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[resolved])


def loss_scale(autocast: contextlib.AbstractContextManager[object]) -> float:
    """A constant factor on the loss before backward under fp16.

    The gradient reaching a stage's output is about 1e-6 of the feature difference (an MSE over 400k elements),
    below fp16's smallest normal number, so unscaled it would be flushed. Adam is invariant to a constant gradient
    scale (up to its epsilon), so no unscaling is needed, and a constant needs no overflow check (no host sync).
    bf16 has fp32's exponent range and needs no scale.
    """
    if isinstance(autocast, torch.autocast) and autocast.fast_dtype == torch.float16:
        return 1024.0
    return 1.0


def denormals_flushed() -> bool:
    """Whether this thread currently flushes denormal floats to zero (torch has a setter but no getter: probe it)."""
    return float(torch.tensor(1e-39) * 1.0) == 0.0  # 1e-39 is a float32 denormal


@contextlib.contextmanager
def flush_denormals() -> Iterator[None]:
    """Treat denormal CPU floats as zero while the block (or decorated function) runs, then restore the caller's state.

    Deep ReLU networks push some activations and gradients into the denormal range, where x86 arithmetic is 10-100×
    slower; they are far below anything the loss can resolve. Measured with RN101 (random weights, 2 threads):
    forward + backward of 3 images took 11.4 s with denormals and 0.75 s without. The flag is per thread (a CPU
    control register; new threads inherit it), so each block probes and restores its own thread's state: blocks nest,
    and concurrent sketches in other threads neither see nor undo each other's setting.
    """
    was_on = denormals_flushed()
    if not was_on and not torch.set_flush_denormal(True):
        yield  # a CPU without the feature
        return
    try:
        yield
    finally:
        if not was_on:
            torch.set_flush_denormal(False)
