"""The backbone of a model config as a list of layers, by `model.arch`: one builder per architecture."""

from __future__ import annotations

from torch import nn

from locallearn.errors import UsageError
from locallearn.nn.layers import ImageLayer
from locallearn.nn.local import LocallyConnected2d, output_size
from locallearn.nn.network import build_layers
from locallearn.nn.resnet import resnet_layers
from locallearn.nn.vgg import vgg_layers


def mlp_layers(model, input_shape: tuple[int, int, int]) -> list[nn.Module]:
    """Dense layers of widths `hidden` [each ending with BatchNorm]; the first flattens the image."""
    return build_layers("mlp", model.hidden, input_shape, model.activation, model.input_norm, (model.input_dropout, model.dropout), model.out_norm)


def image_layers(model, input_shape: tuple[int, int, int]) -> list[nn.Module]:
    """`conv` or `locally-connected` layers: `[pool] -> norm -> map -> activation [-> BatchNorm]` on (B, C, H, W), `channels` wide."""
    channels, height, width = input_shape
    layers: list[nn.Module] = []
    if model.arch != "conv" and any(g > 1 for g in model.groups):
        raise UsageError(f"model.groups splits convolutions; model.arch={model.arch} has none (use model.groups=1)")
    settings = zip(model.channels, model.kernel_size, model.stride, model.padding, model.pool, model.groups)
    for i, (out, kernel, stride, padding, pool, groups) in enumerate(settings):
        pooled = (height // pool, width // pool)
        height, width = (output_size(size, kernel, stride, padding) for size in pooled)
        if height < 1 or width < 1:
            raise UsageError(f"model: layer {i + 1} of the {model.arch} backbone has no output positions left for {tuple(input_shape)} inputs; use smaller kernel_size, stride or pool")
        if model.arch == "conv":
            if channels % groups or out % groups:
                raise UsageError(f"model.groups: layer {i + 1} has {channels} input and {out} output channels, which {groups} groups must both divide")
            op = nn.Conv2d(channels, out, kernel, stride, padding, groups=groups)
        else:
            op = LocallyConnected2d(channels, out, pooled, kernel, stride, padding)
        per_position = model.norm_over == "position" and i > 0
        layers.append(ImageLayer(op, out, model.activation, model.input_norm, per_position, pool, model.pool_kind, model.out_norm, model.dropout if i else model.input_dropout))
        channels = out
    return layers


BUILDERS = {
    "mlp": mlp_layers,
    "locally-connected": image_layers,
    "conv": image_layers,
    "vgg": vgg_layers,
    "resnet18": resnet_layers,
    "resnet32": resnet_layers,
    "resnet50": resnet_layers,
}  # the one list of `model.arch` names (the config schema reads it) and their layer builders
PLAIN = ("mlp", "conv", "locally-connected")  # architectures whose layers take model.dropout and model.out_norm


def build_backbone(model, input_shape: tuple[int, ...]) -> list[nn.Module]:
    """The layers of `model` (a `ModelConfig`) for (C, H, W) inputs, in order; each has `out_features`."""
    if (model.dropout or model.input_dropout) and model.arch not in PLAIN:
        raise UsageError(f"model.dropout and model.input_dropout apply to mlp, conv and locally-connected layers, not model.arch={model.arch} (its regulariser is model.activity_noise)")
    if model.out_norm != "none" and model.arch not in PLAIN:
        raise UsageError(f"model.out_norm applies to mlp, conv and locally-connected layers, not model.arch={model.arch} (whose layers have BatchNorm already); use model.out_norm=none")
    return BUILDERS[model.arch](model, tuple(input_shape))
