"""The terminal progress line of ``clipasso sketch``: set-up passes, then iteration, loss, elapsed time and ETA."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # importing torch costs seconds; `clipasso --help` and `--version` should not pay it
    from .optimize import Progress


class ProgressBar:
    """A one-line terminal progress bar: iteration, loss, elapsed time and ETA."""

    def __init__(self, stream: TextIO, width: int = 28) -> None:
        self.stream = stream
        self.width = width
        self.active = False

    @staticmethod
    def _clock(seconds: float) -> str:
        total = max(0, round(seconds))
        hours, rest = divmod(total, 3600)
        return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"

    def update(self, progress: Progress) -> None:
        done = progress.iteration / max(progress.iterations, 1)
        # "loss" is this iteration's training loss (it jitters with the augmentations); "best" is the lowest
        # evaluation loss so far, the one the summary reports and whose strokes are kept.
        text = (
            f" {progress.iteration}/{progress.iterations}  loss now {progress.loss:.4f}  best {progress.best_loss:.4f}"
            f"  elapsed {self._clock(progress.elapsed_s)}  ETA {self._clock(progress.eta_s)} "
        )
        if progress.level_losses:  # a ladder: each level's loss, lowest level first
            pairs = zip(progress.levels, progress.level_losses, strict=True)
            text += " levels " + " ".join(f"{k}:{loss:.4f}" for k, loss in pairs) + " "
        # A line longer than the terminal wraps, and "\r" then redraws only its last part: shrink the bar instead.
        columns = shutil.get_terminal_size().columns
        width = max(0, min(self.width, columns - 1 - len(text)))
        filled = int(done * width)
        self.stream.write(("\r" + "█" * filled + "·" * (width - filled) + text)[: max(columns, 2)])
        self.stream.flush()
        self.active = True

    def setup(self, done: int, total: int) -> None:
        """The set-up passes before the first iteration, redrawn in place like the bar."""
        self.stream.write(f"\r Preparing the targets: {done}/{total} ")
        self.stream.flush()
        self.active = True

    def status(self, stage: str, message: str) -> None:
        self.finish()
        self.stream.write(message + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.active:
            self.stream.write("\n")
            self.stream.flush()
            self.active = False
