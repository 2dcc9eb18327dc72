"""What the ``clipasso`` command must never do: overwrite a file the user owns, run on settings that are not finite,
or make the user wait for torch to learn that a path is wrong (issue 8 items 1, 3, 20 and 22)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from skimage import data as skdata
from tiny_models import TinyModels

from clipasso_engine.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY_RUN = ["--strokes", "4", "--iterations", "3", "--seeds", "1", "--augmentations", "1"]


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "cat.png"
    Image.fromarray(skdata.chelsea()[::4, ::4]).save(path)
    return path


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_sentence(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("clipasso: ") and lines[0].endswith("."), err
    return lines[0]


@pytest.mark.parametrize(
    "case",
    [
        "output_is_input",
        "output_is_input_relative",
        "output_is_input_symlink",
        "output_is_input_hardlink",
        "json_is_output",
        "output_is_mask",
        "json_is_input",
        "output_is_mask_svg",
        "json_is_detail_svg",
    ],
)
def test_an_output_that_is_an_input_or_the_other_output_is_refused(
    tiny_env: TinyModels,
    photo: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case: str,
) -> None:
    mask = tmp_path / "mask.png"
    Image.new("L", Image.open(photo).size, 255).save(mask)
    out = tmp_path / "out.svg"
    out.write_text("an SVG the user already has\n")
    shapes = tmp_path / "shapes.svg"
    shapes.write_text('<svg xmlns="http://www.w3.org/2000/svg"><circle cx="50" cy="40" r="20"/></svg>\n')
    monkeypatch.chdir(tmp_path)
    args = {
        "output_is_input": [str(photo), "-o", str(photo)],
        "output_is_input_relative": [str(photo), "-o", f"./sub/../{photo.name}"],
        "output_is_input_symlink": [str(photo), "-o", "link.png"],
        "output_is_input_hardlink": [str(photo), "-o", "hard.png"],
        "json_is_output": [str(photo), "-o", str(out), "--json", "out.svg"],
        "output_is_mask": [str(photo), "--mask", str(mask), "-o", str(mask)],
        "json_is_input": [str(photo), "-o", str(tmp_path / "new.svg"), "--json", str(photo)],
        "output_is_mask_svg": [str(photo), "--mask-svg", str(shapes), "-o", str(shapes)],
        "json_is_detail_svg": [str(photo), "--detail-svg", str(shapes), "-o", str(out), "--json", str(shapes)],
    }[case]
    (tmp_path / "sub").mkdir()
    os.symlink(photo, tmp_path / "link.png")
    os.link(photo, tmp_path / "hard.png")
    before = _snapshot(tmp_path)
    status = main(["sketch", *TINY_RUN, *args])
    line = _one_sentence(capsys.readouterr().err)
    assert status == 2 and "same file" in line, line
    assert _snapshot(tmp_path) == before


def test_distinct_outputs_are_written(tiny_env: TinyModels, photo: Path, tmp_path: Path) -> None:
    out, facts = tmp_path / "out.svg", tmp_path / "out.json"
    assert main(["sketch", *TINY_RUN, "-q", str(photo), "-o", str(out), "--json", str(facts)]) == 0
    data = json.loads(facts.read_text())
    assert data["seed"] == 0 and data["seeds"] == 1 and data["winning_run"] == 0
    assert data["settings"]["preset"] == "fast"  # auto on this CPU-only machine


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--width", "inf"),
        ("--width", "1e308"),
        ("--width", "nan"),
        ("--early-stop", "inf"),
        ("--early-stop", "nan"),
        ("--width", "-3"),
    ],
)
def test_non_finite_options_fail_at_once_with_exit_2(
    tiny_env: TinyModels, photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    before = _snapshot(tmp_path)
    status = main(["sketch", *TINY_RUN, str(photo), "-o", str(tmp_path / "o.svg"), option, value])
    line = _one_sentence(capsys.readouterr().err)
    assert status == 2 and "finite" in line, line
    assert _snapshot(tmp_path) == before


def _run_without_torch(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a fresh interpreter and report whether torch got imported."""
    code = (
        "import sys\nfrom clipasso_engine.cli import main\nstatus = main(sys.argv[1:])\n"
        "print('torch imported' if 'torch' in sys.modules else 'no torch')\nsys.exit(status)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
    )


@pytest.mark.parametrize(
    "case",
    [
        "missing_input",
        "input_is_folder",
        "missing_mask",
        "output_is_input",
        "bad_setting",
        "no_out_folder",
        *(f"empty {flag}" for flag in ("input", "-o", "--json", "--mask", "--init", "--mask-svg", "--detail-svg")),
    ],
)
def test_bad_paths_and_settings_are_found_before_torch_loads(photo: Path, tmp_path: Path, case: str) -> None:
    """Issue 8 item 22: a missing input used to be reported after the seconds torch takes to import."""
    args = {
        "missing_input": ["missing.png", "-o", "o.svg"],
        "input_is_folder": [str(tmp_path), "-o", "o.svg"],
        "missing_mask": [str(photo), "--mask", "nomask.png", "-o", "o.svg"],
        "output_is_input": [str(photo), "-o", str(photo)],
        "bad_setting": [str(photo), "-o", "o.svg", "--strokes", "0"],
        "no_out_folder": [str(photo), "-o", "nofolder/o.svg"],
        # An empty path is the current folder to pathlib, and used to pass as "not given" or fail after the run.
        "empty input": ["", "-o", "o.svg"],
        "empty -o": [str(photo), "-o", ""],
        **{
            f"empty {flag}": [str(photo), "-o", "o.svg", flag, ""]
            for flag in ("--json", "--mask", "--init", "--mask-svg", "--detail-svg")
        },
    }[case]
    done = _run_without_torch(tmp_path, "sketch", *args)
    assert done.returncode != 0 and done.stdout.strip() == "no torch", (done.stdout, done.stderr)
    sentence = _one_sentence(done.stderr)
    if case.startswith("empty"):
        assert "path is empty" in sentence, sentence
        assert not (tmp_path / "o.svg").exists()


def test_verbose_shows_the_details_behind_a_one_sentence_error(
    tiny_env: TinyModels, photo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(tiny_env.loss_weights.read_bytes()[:1000])
    args = ["sketch", *TINY_RUN, str(photo), "-o", str(tmp_path / "o.svg"), "--loss-weights", str(truncated)]
    assert main(args) != 0
    sentence = _one_sentence(capsys.readouterr().err)
    assert main([*args, "--verbose"]) != 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1] == sentence and len(lines) > 1
    assert any(line.startswith("clipasso: INFO: ") for line in lines[:-1]), lines
