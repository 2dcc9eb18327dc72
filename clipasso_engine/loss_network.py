"""The loss network: a frozen CLIP ResNet image tower whose forward returns the named stages and the embedding.

The forward is written out (stem → layer1 … layer4 → attention pool) and keeps nothing between calls, so threads
may share one network. Before use, every eval-mode BatchNorm is folded into the convolution before it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .config import SketchSettings
from .errors import ModelConfigError
from .towers import load_clip_visual

#: The residual stages of an open_clip ModifiedResNet, in forward order.
STAGES = ("layer1", "layer2", "layer3", "layer4")
#: The whole forward of a ModifiedResNet, part by part: its own ``forward`` runs exactly these.
_FORWARD = ("stem", *STAGES, "attnpool")


def fold_batch_norms(module: nn.Module) -> int:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d into it; returns how many were folded.

    Handles the two ways an open_clip ModifiedResNet pairs them: attributes ``convK``/``bnK`` of one module (stem
    and bottlenecks) and consecutive entries of an ``nn.Sequential`` (the downsample branch). The BatchNorm
    becomes an ``nn.Identity``, so the module structure and names stay.
    """
    folded = 0
    for child in list(module.children()):
        folded += fold_batch_norms(child)
    names = dict(module.named_children())
    for name, norm in names.items():
        if not (isinstance(norm, nn.BatchNorm2d) and name.startswith("bn") and not norm.training):
            continue
        conv = names.get("conv" + name[2:])
        if isinstance(conv, nn.Conv2d) and not conv.training:
            setattr(module, "conv" + name[2:], fuse_conv_bn_eval(conv, norm))
            setattr(module, name, nn.Identity())
            folded += 1
    if isinstance(module, nn.Sequential):
        for first, second in itertools.pairwise(list(module._modules)):
            conv, norm = module._modules[first], module._modules[second]
            if (
                isinstance(conv, nn.Conv2d)
                and isinstance(norm, nn.BatchNorm2d)
                and not (conv.training or norm.training)
            ):
                module._modules[first] = fuse_conv_bn_eval(conv, norm)
                module._modules[second] = nn.Identity()
                folded += 1
    return folded


class LossNetwork(nn.Module):
    """A frozen open_clip ``ModifiedResNet`` (RN50, RN101, ...) returning stage activations and the embedding."""

    def __init__(
        self, visual: nn.Module, layers: Sequence[str] = ("layer2", "layer3"), *, optimise: bool = True
    ) -> None:
        super().__init__()
        unknown = [name for name in layers if name not in STAGES]
        if unknown or not all(callable(getattr(visual, part, None)) for part in _FORWARD):
            missing = ", ".join(unknown) or "the ResNet stages"
            raise ModelConfigError(
                f"The loss model has no stage named {missing}; it must be an open_clip ResNet (RN50, RN101, ...) "
                f"with stages layer1 to layer4."
            )
        device = next(visual.parameters()).device
        # Frozen and in eval mode, BatchNorm is an affine map: folding it into the preceding convolution saves a
        # pass over every activation (measured ~10% of RN101 forward + backward on CPU), same function. Channels-last
        # is the layout oneDNN and cuDNN (tensor cores) run convolutions fastest in; MPS gains nothing from it.
        if optimise:
            fold_batch_norms(visual)
        self.channels_last = optimise and device.type in ("cpu", "cuda")
        if self.channels_last:
            visual.to(memory_format=torch.channels_last)
        self.visual = visual
        self.layers = tuple(layers)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """Activations of ``images``, CLIP-normalised, shape (B, 3, 224, 224).

        Returns ``{layer: (B, C, H, W) for each layer, "embedding": (B, D)}``; for RN101 layer2 is
        (B, 512, 28, 28), layer3 (B, 1024, 14, 14) and the embedding (B, 512). One pass through the tower, which
        the embedding needs whole anyway; the weights are frozen, so gradients reach ``images`` only.
        """
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        out: dict[str, Tensor] = {}
        x = images
        for name in _FORWARD:
            x = getattr(self.visual, name)(x)
            if name in self.layers:
                out[name] = x
        out["embedding"] = x
        return out


def load_loss_network(settings: SketchSettings, device: torch.device) -> LossNetwork:
    """The loss network the settings name (``loss_model``, ``loss_weights``, ``geometric_layers``)."""
    visual = load_clip_visual(
        settings.loss_model, settings.loss_weights, device=device, model_config=settings.model_config, role="loss"
    )
    return LossNetwork(visual, settings.geometric_layers)
