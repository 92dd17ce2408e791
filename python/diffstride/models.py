"""The pre-activation ResNet of docs/resnet.md, as the C++ library builds
it: the same layers, parameter counts and initialisation, so that weights
carry over between the two."""
import math
from collections import OrderedDict
from typing import List, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .modules import DiffStride, FixedSpectralPooling, SpatialPooling

Stride = Union[float, Tuple[float, float]]

POOLINGS = ("none", "spatial", "spectral", "diffstride")

# A standard normal truncated to [-2, 2] has this standard deviation.
_TRUNCATED_STD = 0.87962566103423978


def he_normal_(weight: Tensor) -> Tensor:
    """He-normal initialisation as Keras does it: a normal truncated at two
    standard deviations, rescaled to std sqrt(2 / fan_in)."""
    fan_in = weight[0].numel()
    std = math.sqrt(2.0 / fan_in) / _TRUNCATED_STD
    return nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


def _pair(stride: Stride) -> Tuple[float, float]:
    return (float(stride), float(stride)) if isinstance(stride, (int, float)) else \
        (float(stride[0]), float(stride[1]))


def _whole(stride: Stride) -> Tuple[int, int]:
    pair = _pair(stride)
    for s in pair:
        if s < 1 or math.floor(s) != s:
            raise ValueError("ResNet: strided convolutions (pooling 'none') need whole "
                             f"strides >= 1, got {s}")
    return int(pair[0]), int(pair[1])


def _conv(in_channels: int, out_channels: int, kernel_size: int, stride) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                     padding=kernel_size // 2, bias=False)
    he_normal_(conv.weight)
    return conv


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)


def _pooling_layer(pooling: str, stride: Stride, diffstride_options: dict) -> nn.Module:
    if pooling == "spatial":
        return SpatialPooling([math.ceil(s) for s in _pair(stride)])
    if pooling == "spectral":
        return FixedSpectralPooling(_pair(stride))
    if pooling == "diffstride":
        return DiffStride(_pair(stride), **diffstride_options)
    return nn.Identity()


class ResidualLayer(nn.Module):
    """h = conv(relu(bn0(x))), then the pooling layer (projecting layers),
    then h = conv(relu(bn1(h))); the shortcut of a projecting layer is a 1x1
    convolution of relu(bn0(x)) through the same pooling instance, otherwise
    x. Output h + shortcut."""

    __constants__ = ["project"]

    def __init__(self, in_channels: int, filters: int, strides: Stride = 1.0,
                 project: bool = False, kernel_size: int = 3, pooling: str = "none",
                 diffstride_options: dict = None) -> None:
        super().__init__()
        if not project and in_channels != filters:
            raise ValueError("ResidualLayer: an identity layer keeps the channel count, "
                             f"got {in_channels} -> {filters}")
        pooled = project and pooling != "none"
        stride = _whole(strides) if project and not pooled else 1
        self.project = project
        self.bn0 = _batch_norm(in_channels)
        self.conv0 = _conv(in_channels, filters, kernel_size, stride)
        self.bn1 = _batch_norm(filters)
        self.conv1 = _conv(filters, filters, kernel_size, 1)
        self.shortcut = _conv(in_channels, filters, 1, stride) if project else nn.Identity()
        self.pooling = _pooling_layer(pooling if pooled else "none", strides,
                                      diffstride_options or {})

    def forward(self, input: Tensor) -> Tensor:
        activated = torch.relu(self.bn0(input))
        h = self.pooling(self.conv0(activated))
        h = self.conv1(torch.relu(self.bn1(h)))
        if not self.project:
            return h + input
        return h + self.pooling(self.shortcut(activated))


class ResNet(nn.Module):
    """Stem convolution (and pooling layer), blocks of residual layers,
    batch norm, ReLU, global average pooling, dense layer. Layer `l` of
    block `b` is `blocks["block{b}_layer{l}"]`."""

    def __init__(self, filters: Sequence[int], strides: Sequence[Stride],
                 layers_per_block: int = 2, id_only: Sequence[int] = (),
                 kernel_size: int = 3, num_classes: int = 10, in_channels: int = 3,
                 pooling: str = "none", **diffstride_options) -> None:
        super().__init__()
        if not filters or len(filters) != len(strides):
            raise ValueError(f"ResNet: expected one stride per stage, got {len(filters)} "
                             f"filters and {len(strides)} strides")
        if layers_per_block < 1:
            raise ValueError(f"ResNet: expected at least 1 layer per block, got {layers_per_block}")
        if pooling not in POOLINGS:
            raise ValueError(f"ResNet: unknown pooling '{pooling}': expected one of "
                             f"{', '.join(POOLINGS)}")
        for block in id_only:
            if not 0 <= block < len(filters) - 1:
                raise ValueError(f"ResNet: id_only names block {block}, but there are "
                                 f"{len(filters) - 1} blocks")
        pooled = pooling != "none"
        self.stem = _conv(in_channels, filters[0], kernel_size,
                          1 if pooled else _whole(strides[0]))
        self.stem_pooling = _pooling_layer(pooling, strides[0], diffstride_options)
        layers = OrderedDict()
        channels = filters[0]
        for b in range(1, len(filters)):
            for l in range(layers_per_block):
                layers[f"block{b - 1}_layer{l}"] = ResidualLayer(
                    channels, filters[b], strides[b], project=l == 0 and (b - 1) not in id_only,
                    kernel_size=kernel_size, pooling=pooling,
                    diffstride_options=diffstride_options)
                channels = filters[b]
        self.blocks = nn.ModuleDict(layers)
        self.head_bn = _batch_norm(channels)
        self.fc = nn.Linear(channels, num_classes)
        he_normal_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, input: Tensor) -> Tensor:
        x = self.stem_pooling(self.stem(input))
        for layer in self.blocks.values():
            x = layer(x)
        x = torch.relu(self.head_bn(x)).mean(dim=(2, 3))
        return self.fc(x)


def resnet(filters: Sequence[int], strides: Sequence[Stride], **options) -> ResNet:
    """The general factory: any filters and strides per stage."""
    return ResNet(filters, strides, **options)


def resnet18(**options) -> ResNet:
    """Filters 64, 64, 128, 256, 512; strides 1, 1, 2, 2, 2; the first block's
    first layer an identity layer; 2 layers per block."""
    return ResNet([64, 64, 128, 256, 512], [1.0, 1.0, 2.0, 2.0, 2.0], layers_per_block=2,
                  id_only=[0], **options)


def resnet56(**options) -> ResNet:
    """Filters 16, 16, 32, 64; strides 1, 1, 2, 2; 9 layers per block."""
    return ResNet([16, 16, 32, 64], [1.0, 1.0, 2.0, 2.0], layers_per_block=9, **options)


def _factory_defaults(name: str) -> dict:
    factories = {
        "resnet18": dict(filters=[64, 64, 128, 256, 512], strides=[1.0, 1.0, 2.0, 2.0, 2.0],
                         layers_per_block=2, id_only=[0]),
        "resnet56": dict(filters=[16, 16, 32, 64], strides=[1.0, 1.0, 2.0, 2.0],
                         layers_per_block=9, id_only=[]),
    }
    if name not in factories:
        raise ValueError(f"unknown model '{name}': expected one of "
                         f"{', '.join(list(factories) + ['resnet'])}")
    return factories[name]


def from_run(folder, map_location="cpu") -> ResNet:
    """The final model of a `diffstride train` run: the architecture its
    config.toml describes (input channels and classes from the weights) with
    the weights of its model_state_dict.pt, in eval mode."""
    import pathlib
    import tomllib

    folder = pathlib.Path(folder)
    with open(folder / "config.toml", "rb") as file:
        model = tomllib.load(file).get("model", {})
    state = torch.load(folder / "model_state_dict.pt", map_location=map_location)
    factory = model.get("factory", "resnet")
    options = dict(filters=model.get("filters"), strides=model.get("strides"),
                   layers_per_block=model.get("layers_per_block", 2),
                   id_only=model.get("id_only", []))
    if factory != "resnet":
        defaults = _factory_defaults(factory)
        options = {key: options[key] if options[key] and key in ("filters", "strides")
                   else defaults[key] for key in defaults}
        if model.get("layers_per_block"):
            options["layers_per_block"] = model["layers_per_block"]
    diffstride_options = dict(
        smoothness_factor=model.get("smoothness_factor", 4.0),
        cropping=model.get("cropping", True),
        shared_stride=model.get("shared_stride", False),
        trainable=model.get("trainable_strides", True),
        lower_limit_stride=model.get("lower_limit_stride", 1.0),
        upper_limit_stride=model.get("upper_limit_stride"))
    network = ResNet(options["filters"], [tuple(s) if isinstance(s, list) else s
                                          for s in options["strides"]],
                     layers_per_block=options["layers_per_block"], id_only=options["id_only"],
                     num_classes=state["fc.weight"].shape[0],
                     in_channels=state["stem.weight"].shape[1],
                     pooling=model.get("pooling", "none"), **diffstride_options)
    network.load_state_dict(state)
    return network.eval()
