"""Write full-size CLIP checkpoints with random weights, for timing the real command where weights can't be fetched.

    python benchmarks/random_weights.py OUT_DIR
    clipasso sketch photo.png -o out.svg --preset fast \
        --loss-weights OUT_DIR/RN101.pt --saliency-weights OUT_DIR/ViT-B-32-quickgelu.pt

Timing does not depend on the weights' values; the sketches they give mean nothing.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import open_clip
import torch

from clipasso_engine.config import SketchSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns that no pretrained weights were loaded
    defaults = SketchSettings()
    for arch in (defaults.loss_model, defaults.saliency_model):
        path = args.out_dir / f"{arch}.pt"
        torch.save(open_clip.create_model(arch, pretrained=None).state_dict(), path)
        print(path)


if __name__ == "__main__":
    main()
