"""open_clip architecture configs: adding the user's (``--model-config``) and checking architecture names."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Literal

import open_clip

from .errors import ModelConfigError

# Resolved config paths already handed to open_clip: its registry is global and re-reads every path on each
# addition, so adding one twice only makes later additions slower.
_REGISTERED_CONFIG_PATHS: set[Path] = set()


def register_model_configs(path: str | None) -> list[str]:
    """Add the open_clip architecture configs in ``path`` (a JSON file or a folder of them); their names.

    Each JSON is an open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``) and its file stem is the
    architecture name. Files are checked before open_clip sees them, because one broken file in its registry
    breaks every later lookup.
    """
    if not path:
        return []
    root = Path(path).expanduser().resolve()
    if root.is_dir():
        files = sorted(root.glob("*.json"))
    elif root.is_file():
        files = [root]
    else:
        raise ModelConfigError(f"Model config {path} does not exist: pass a JSON file or a folder of them.")
    if not files:
        raise ModelConfigError(f"Model config folder {path} holds no .json files.")
    for file in files:
        try:
            config = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ModelConfigError(f"Model config {file} is not readable JSON: {err}.") from err
        missing = [
            key for key in ("embed_dim", "vision_cfg", "text_cfg") if not isinstance(config, dict) or key not in config
        ]
        if missing:
            raise ModelConfigError(f"Model config {file} is not an open_clip config: it lacks {', '.join(missing)}.")
    if root not in _REGISTERED_CONFIG_PATHS:
        open_clip.add_model_config(root)
        _REGISTERED_CONFIG_PATHS.add(root)
    return [file.stem for file in files]


def check_arch(arch: str, role: Literal["loss", "saliency"]) -> None:
    """Refuse an architecture name open_clip does not know, suggesting close ones."""
    known = open_clip.list_models()
    if arch in known:
        return
    close = difflib.get_close_matches(arch, known, n=5, cutoff=0.5)
    examples = close or (["RN50", "RN101", "RN50x4"] if role == "loss" else ["ViT-B-32-quickgelu", "ViT-B-16"])
    raise ModelConfigError(
        f"Unknown {role} model architecture {arch!r}. Try one of: {', '.join(examples)} "
        f'(all: `python -c "import open_clip; print(open_clip.list_models())"`), or add a config with '
        f"--model-config."
    )
