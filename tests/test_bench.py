"""``clipasso bench``: every set-up pass a real run does is timed, precisions side by side, the real command beside
the prediction, peak memory per row. Timings themselves are never asserted (benchmarks print numbers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_models import TinyModels

from clipasso_engine import bench, ladder_cut
from clipasso_engine.bench import cat_image, peak_memory_mb, reset_peak_memory, time_optimisation
from clipasso_engine.bench_command import _wait, real_run
from clipasso_engine.cli import main
from clipasso_engine.config import PRESETS, preset_settings
from clipasso_engine.ladder_cut import ESTIMATE_EVERY, LiveLevels
from clipasso_engine.loss_network import load_loss_network

CPU = torch.device("cpu")


@pytest.mark.parametrize("name", list(PRESETS))
def test_the_timed_loop_computes_every_set_up_pass_of_a_real_run(tiny_models: TinyModels, name: str) -> None:
    """The old bench drew ``measure + 1`` augmentation steps, so ``fast`` computed 3 of its 33 set-up passes."""
    network = load_loss_network(tiny_models.settings(), CPU)
    settings = preset_settings(name).replace(seeds=1, strokes=2)
    initial = torch.rand(1, 2, 4, 2) * 224
    timing = time_optimisation(initial, torch.rand(3, 224, 224), network, settings, measure=1)
    assert timing["target_passes"] == 1 + settings.augmentation_pool  # the clean target, then each pooled step
    assert timing["targets_s"] > 0 and timing["s_per_iteration"] > 0
    # The prediction covers all the preset's iterations, not the two that ran.
    assert timing["optimise_s"] >= (settings.iterations - 2) * timing["s_per_iteration"]


def test_bench_puts_precisions_side_by_side_with_the_set_up_by_stage(
    tiny_env: TinyModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    args = ["bench", "--presets", "fast", "--precisions", "fp32,bf16", "--measure", "1", "--repeats", "1"]
    assert main([*args, "--strokes", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["loss_model"] == tiny_env.loss_model  # the environment's architectures, with random weights
    assert report["ladder"] is None  # no --ladder, no ladder rows
    stages = report["setup"]
    assert set(stages) == {"startup_s", "prepare_image_s", "load_loss_network_s", "load_saliency_model_s", "saliency_s"}
    assert all(value > 0 for value in stages.values())
    rows = report["presets"]["fast"]
    assert list(rows) == ["fp32", "bf16"]
    for row in rows.values():
        assert row["target_passes"] == 33
        assert row["predicted_wall_s"] > sum(stages.values()) + row["targets_s"]
        assert row["ratio_to_floor"] == pytest.approx(row["s_per_iteration"] / row["floor_s_per_iteration"])
        if sys.platform.startswith("linux"):
            assert row["peak_memory_mb"] > 0
    table = capsys.readouterr().out
    assert "| fast | fp32 | 1×(1+2) |" in table and "| fast | bf16 | 1×(1+2) |" in table
    assert "33 in " in table and "loading the models" in table


def test_bench_times_a_ladder_beside_each_presets_plain_run(
    tiny_env: TinyModels, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12's cost bound is read in the same bench run: each preset's ladder row against its plain row."""
    timed_ladders: list[tuple[int, ...]] = []
    measured: list[int] = []

    def spy(initial: torch.Tensor, target: torch.Tensor, network: Any, settings: Any, measure: int) -> Any:
        timed_ladders.append(settings.ladder)
        measured.append(measure)
        return time_optimisation(initial, target, network, settings, measure)

    monkeypatch.setattr(bench, "time_optimisation", spy)
    estimates: list[tuple[int, ...]] = []

    class CountedLevels(LiveLevels):  # the ladder row times a cut ladder: the plain loop, levels estimated live
        def __call__(self, progress: Any) -> None:
            estimates.append(self.levels)
            super().__call__(progress)

    monkeypatch.setattr(ladder_cut, "LiveLevels", CountedLevels)
    out = tmp_path / "bench.json"
    args = ["bench", "--presets", "draft", "--precisions", "fp32", "--measure", "1", "--repeats", "1"]
    assert main([*args, "--strokes", "4", "--ladder", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["ladder"]["levels"] == [4]  # --ladder alone: 4,8,16,32 capped at the 4 strokes
    assert main([*args, "--strokes", "6", "--ladder", "2,4", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["ladder"]["levels"] == [2, 4, 6]  # the bench's --strokes is the top level, as in a sketch
    assert timed_ladders == [(), (4,), (), (2, 4, 6)]  # each ladder row really ran the ladder, after the plain row
    # A ladder row spans one live estimate of its levels at least; the plain rows take --measure's 1.
    assert measured == [1, ESTIMATE_EVERY, 1, ESTIMATE_EVERY]
    assert estimates and set(estimates) == {(4,), (2, 4, 6)}
    plain, ladder = report["presets"]["draft"]["fp32"], report["ladder"]["presets"]["draft"]["fp32"]
    assert (ladder["strokes"], ladder["iterations"]) == (plain["strokes"], plain["iterations"]) == (6, 150)
    assert ladder["ratio_to_plain"] == pytest.approx(ladder["s_per_iteration"] / plain["s_per_iteration"])
    assert ladder["predicted_wall_s"] > ladder["targets_s"] > 0 and ladder["s_per_iteration"] > 0
    if sys.platform.startswith("linux"):
        assert ladder["peak_memory_mb"] > 0
    table = capsys.readouterr().out
    assert "| preset + ladder 2,4,6 | precision | s/iter | × plain |" in table
    assert f"| draft + ladder | fp32 | {ladder['s_per_iteration']:.3f} | {ladder['ratio_to_plain']:.2f} |" in table


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--ladder", "", "--ladder needs stroke counts"),
        ("--ladder", "8,4", "must increase"),
        ("--ladder", "4,4", "repeats the level 4"),
        ("--ladder", "0,4", "from 1 to 4096, got 0"),
        ("--ladder", "4,32", "top level 32 is more than the 16 strokes"),
        ("--ladder", "4,nan", "'nan' is not one"),
        ("--ladder", "1" * 40, "is not one"),
        ("--precisions", "fp8", "--precisions must name"),
        ("--precisions", ",", "--precisions must name"),
        ("--presets", "", "--presets must name"),
        ("--real-run", "slow", "--real-run must name"),
        ("--measure", "-1", "--measure must be"),
        ("--repeats", "0", "--repeats"),
        ("--strokes", "0", "strokes must be a whole number"),
        ("--strokes", "99999999", "strokes must be a whole number"),
    ],
)
def test_bad_bench_options_are_one_sentence(
    tiny_env: TinyModels, capsys: pytest.CaptureFixture[str], option: str, value: str, words: str
) -> None:
    assert main(["bench", option, value]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_real_run_times_the_real_command_and_reads_its_facts(tiny_env: TinyModels, tmp_path: Path) -> None:
    image = tmp_path / "cat.png"
    cat_image().save(image)
    settings = preset_settings("fast").replace(
        strokes=2,
        iterations=2,
        loss_model=tiny_env.loss_model,
        loss_weights=str(tiny_env.loss_weights),
        saliency_model=tiny_env.saliency_model,
        saliency_weights=str(tiny_env.saliency_weights),
        model_config=str(tiny_env.model_config),
    )
    outcome = real_run(settings, image, tmp_path, "cpu", threads=1)
    assert outcome["iterations_run"] == 2  # --early-stop 0: every iteration ran
    assert outcome["wall_s"] > outcome["engine_timings"]["total_s"] > 0  # the process is more than the engine's run
    assert "--preset fast --early-stop 0 --strokes 2" in outcome["command"]
    if sys.platform.startswith("linux"):
        assert outcome["peak_memory_mb"] > 50  # torch alone is more: this is the child's, not a placeholder
    with pytest.raises(RuntimeError, match="the real run failed"):
        real_run(settings.replace(loss_weights=str(tmp_path / "missing.pt")), image, tmp_path, "cpu", threads=1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's exec keeps the parent's ru_maxrss")
def test_the_real_runs_peak_memory_is_the_childs_own_not_the_benchs() -> None:
    """The bench itself peaks at gigabytes before the real run; wait4's ru_maxrss reported that for the child."""
    ballast = bytearray(600 * 2**20)  # touched: 600 MB resident in this process
    ballast[::4096] = b"x" * len(ballast[::4096])
    child = subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(50 * 2**20); time.sleep(1)"])
    peak = _wait(child)
    assert child.returncode == 0
    assert peak is not None and 50 < peak < 300, peak
    del ballast


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux's resettable peak RSS only")
def test_peak_memory_is_per_row_not_the_process_peak_so_far() -> None:
    reset_peak_memory(CPU)
    big = torch.ones(300 * 2**20 // 4)  # 300 MiB, touched
    with_big = peak_memory_mb(CPU)[0]
    del big
    reset_peak_memory(CPU)
    without = peak_memory_mb(CPU)[0]
    assert with_big is not None and without is not None
    assert with_big - without > 250
