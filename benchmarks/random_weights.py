"""Write full-size CLIP checkpoints with random weights, for timing the real command where weights can't be fetched.

    python benchmarks/random_weights.py OUT_DIR
    clipasso sketch photo.png -o out.svg --preset fast --early-stop 0 \
        --loss-weights OUT_DIR/RN101.pt --saliency-weights OUT_DIR/ViT-B-32-quickgelu.pt

Timing does not depend on the weights' values; the sketches they give mean nothing, and their loss is flat, so
``--early-stop 0`` keeps a run from stopping early. ``clipasso bench --real-run`` does all of this in one command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from clipasso_engine.bench import write_random_checkpoints
from clipasso_engine.config import SketchSettings
from clipasso_engine.environment import settings_from_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    settings = settings_from_env(SketchSettings())  # the default architectures, or those CLIPASSO_* names
    for path in write_random_checkpoints(args.out_dir, [settings.loss_model, settings.saliency_model]).values():
        print(path)


if __name__ == "__main__":
    main()
