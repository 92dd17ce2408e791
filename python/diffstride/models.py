"""The pre-activation ResNet of docs/resnet.md, as the C++ library builds
it: the same layers, parameter counts and initialisation, so that weights
carry over between the two."""
import inspect
import itertools
import math
from collections import OrderedDict
from typing import List, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .modules import (DiffStride, DiffStride1d, FixedSpectralPooling, FixedSpectralPooling1d,
                      SpatialPooling)

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


def _conv(in_channels: int, out_channels: int, kernel_size: int, stride,
          spatial_dims: int = 2) -> nn.Conv2d:
    """A k x k convolution, or for waveforms (spatial_dims 1) a 1 x k one
    striding along time only."""
    if spatial_dims == 1:
        time_stride = stride if isinstance(stride, int) else stride[1]
        conv = nn.Conv2d(in_channels, out_channels, (1, kernel_size), stride=(1, time_stride),
                         padding=(0, kernel_size // 2), bias=False)
    else:
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                         padding=kernel_size // 2, bias=False)
    he_normal_(conv.weight)
    return conv


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)


class _AlongTime(nn.Module):
    """A 1-D pooling layer applied to N x C x 1 x L activations (its module
    is `layer`, as in the C++ library's state dict)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, input: Tensor) -> Tensor:
        if input.dim() != 4 or input.shape[2] != 1:
            raise ValueError("AlongTime: expected an N x C x 1 x L input, got shape "
                             f"{list(input.shape)}")
        return self.layer(input.squeeze(2)).unsqueeze(2)


def _pooling_layer(pooling: str, stride: Stride, diffstride_options: dict,
                   spatial_dims: int = 2) -> nn.Module:
    if spatial_dims == 1 and pooling != "none":
        time_stride = _pair(stride)[1]
        if pooling == "spatial":
            return SpatialPooling([1, math.ceil(time_stride)])
        if pooling == "spectral":
            return _AlongTime(FixedSpectralPooling1d(time_stride))
        options = {k: v for k, v in diffstride_options.items() if k != "shared_stride"}
        return _AlongTime(DiffStride1d(time_stride, **options))
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
                 diffstride_options: dict = None, spatial_dims: int = 2) -> None:
        super().__init__()
        if not project and in_channels != filters:
            raise ValueError("ResidualLayer: an identity layer keeps the channel count, "
                             f"got {in_channels} -> {filters}")
        pooled = project and pooling != "none"
        stride = _whole(strides) if project and not pooled else 1
        self.project = project
        self.bn0 = _batch_norm(in_channels)
        self.conv0 = _conv(in_channels, filters, kernel_size, stride, spatial_dims)
        self.bn1 = _batch_norm(filters)
        self.conv1 = _conv(filters, filters, kernel_size, 1, spatial_dims)
        self.shortcut = (_conv(in_channels, filters, 1, stride, spatial_dims) if project
                         else nn.Identity())
        self.pooling = _pooling_layer(pooling if pooled else "none", strides,
                                      diffstride_options or {}, spatial_dims)

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
    block `b` is `blocks["block{b}_layer{l}"]`. With spatial_dims 1 it
    takes waveforms (N x C x L or N x C x 1 x L): 1 x k kernels and 1-D
    pooling along time (docs/resnet.md, "Waveforms"). The pooling is
    DiffStride unless `pooling` says otherwise ("none": strided
    convolutions, "spatial", "spectral"), as in the command-line tool's
    recipe."""

    def __init__(self, filters: Sequence[int], strides: Sequence[Stride],
                 layers_per_block: int = 2, id_only: Sequence[int] = (),
                 kernel_size: int = 3, num_classes: int = 10, in_channels: int = 3,
                 pooling: str = "diffstride", spatial_dims: int = 2,
                 **diffstride_options) -> None:
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
        if spatial_dims not in (1, 2):
            raise ValueError("ResNet: expected 1 (waveforms) or 2 (images) spatial "
                             f"dimensions, got {spatial_dims}")
        pooled = pooling != "none"
        self.spatial_dims = spatial_dims
        self.stem = _conv(in_channels, filters[0], kernel_size,
                          1 if pooled else _whole(strides[0]), spatial_dims)
        self.stem_pooling = _pooling_layer(pooling, strides[0], diffstride_options,
                                           spatial_dims)
        layers = OrderedDict()
        channels = filters[0]
        for b in range(1, len(filters)):
            for l in range(layers_per_block):
                layers[f"block{b - 1}_layer{l}"] = ResidualLayer(
                    channels, filters[b], strides[b], project=l == 0 and (b - 1) not in id_only,
                    kernel_size=kernel_size, pooling=pooling,
                    diffstride_options=diffstride_options, spatial_dims=spatial_dims)
                channels = filters[b]
        self.blocks = nn.ModuleDict(layers)
        self.head_bn = _batch_norm(channels)
        self.fc = nn.Linear(channels, num_classes)
        he_normal_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, input: Tensor) -> Tensor:
        if self.spatial_dims == 1 and input.dim() == 3:
            input = input.unsqueeze(2)
        x = self.stem_pooling(self.stem(input))
        for layer in self.blocks.values():
            x = layer(x)
        x = torch.relu(self.head_bn(x)).mean(dim=(2, 3))
        return self.fc(x)


def parameter_groups(model: nn.Module, weight_decay: float = 5e-4) -> List[dict]:
    """The two parameter groups of the recipe (docs/training.md) for
    torch.optim.SGD: the convolution weights and the dense layer's weight
    and bias carry the L2 penalty `weight_decay * sum(w^2)`, whose gradient
    is SGD's weight decay of 2 * weight_decay; batch norms and DiffStride's
    strides carry none."""
    decayed = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            decayed.append(module.weight)
        elif isinstance(module, nn.Linear):
            decayed.extend([module.weight, module.bias])
    chosen = {id(p) for p in decayed}
    others = [p for p in model.parameters() if id(p) not in chosen]
    return [{"params": decayed, "weight_decay": 2.0 * weight_decay},
            {"params": others, "weight_decay": 0.0}]


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


def resnet1d(**options) -> ResNet:
    """For waveforms: filters 32, 32, 64, 128, 256; strides 4, 1, 4, 4, 4 along
    time; the first block's first layer an identity layer; 2 layers per block;
    1 x 9 kernels."""
    return ResNet(**dict(_factory_defaults("resnet1d"), **options))


def _factory_defaults(name: str) -> dict:
    factories = {
        "resnet18": dict(filters=[64, 64, 128, 256, 512], strides=[1.0, 1.0, 2.0, 2.0, 2.0],
                         layers_per_block=2, id_only=[0], kernel_size=3, spatial_dims=2),
        "resnet56": dict(filters=[16, 16, 32, 64], strides=[1.0, 1.0, 2.0, 2.0],
                         layers_per_block=9, id_only=[], kernel_size=3, spatial_dims=2),
        "resnet1d": dict(filters=[32, 32, 64, 128, 256], strides=[4.0, 1.0, 4.0, 4.0, 4.0],
                         layers_per_block=2, id_only=[0], kernel_size=9, spatial_dims=1),
    }
    if name not in factories:
        raise ValueError(f"unknown model '{name}': expected one of "
                         f"{', '.join(list(factories) + ['resnet'])}")
    return factories[name]


def load_weights(path, map_location="cpu") -> dict:
    """A dict of tensors written by the C++ tool (model_state_dict.pt, eval
    --dump-logits), read by torch.load with weights_only=True: the file may
    only rebuild tensors and plain containers, never run code."""
    if "weights_only" not in inspect.signature(torch.load).parameters:
        raise RuntimeError(f"{path}: reading it safely needs torch.load(weights_only=True), "
                           f"which PyTorch {torch.__version__} lacks (1.13 or later has it)")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise ValueError(f"{path}: expected a dict of names to tensors")
    return state


def _check_layers_against_weights(options: dict, state: dict, path) -> None:
    """The filters and layers config.toml gives are those of the weights,
    checked before the network is built: config.toml is as untrusted as the
    weights, and its numbers alone could ask for gigabytes."""
    filters, layers = options["filters"], options["layers_per_block"]
    if not filters or not isinstance(layers, int) or layers < 1:
        raise ValueError(f"{path}: config.toml gives no filters or layers per block")
    def layer(b, l):
        return f"blocks.block{b - 1}_layer{l}.conv1.weight", filters[b]

    # The last layer first: a config asking for more blocks or layers than
    # the weights have fails at once, however large its numbers.
    last = len(filters) - 1
    expected = itertools.chain([layer(last, layers - 1)] if last >= 1 else [],
                               [("stem.weight", filters[0])],
                               (layer(b, l) for b in range(1, len(filters))
                                for l in range(layers)))
    for key, out_channels in expected:
        if key not in state or state[key].dim() < 1 or state[key].shape[0] != out_channels:
            raise ValueError(f"{path}: config.toml's filters {list(filters)} and "
                             f"{layers} layer(s) per block do not match the weights "
                             f"(at {key})")


def from_run(folder, map_location="cpu") -> ResNet:
    """The final model of a `diffstride train` run: the architecture its
    config.toml describes (input channels and classes from the weights) with
    the weights of its model_state_dict.pt, in eval mode."""
    import pathlib
    import tomllib

    folder = pathlib.Path(folder)
    with open(folder / "config.toml", "rb") as file:
        model = tomllib.load(file).get("model", {})
    path = folder / "model_state_dict.pt"
    state = load_weights(path, map_location=map_location)
    for key in ("stem.weight", "fc.weight"):
        if key not in state or state[key].dim() < 2:
            raise ValueError(f"{path}: expected the state dict of a ResNet, with a "
                             f"matrix or convolution weight '{key}'")
    factory = model.get("factory", "resnet")
    options = dict(filters=model.get("filters"), strides=model.get("strides"),
                   layers_per_block=model.get("layers_per_block", 2),
                   id_only=model.get("id_only", []), kernel_size=3, spatial_dims=2)
    if factory != "resnet":
        defaults = _factory_defaults(factory)
        options = {key: options[key] if options[key] and key in ("filters", "strides")
                   else defaults[key] for key in defaults}
        if model.get("layers_per_block"):
            options["layers_per_block"] = model["layers_per_block"]
    _check_layers_against_weights(options, state, path)
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
                     kernel_size=options["kernel_size"], spatial_dims=options["spatial_dims"],
                     num_classes=state["fc.weight"].shape[0],
                     in_channels=state["stem.weight"].shape[1],
                     pooling=model.get("pooling", "none"), **diffstride_options)
    network.load_state_dict(state)
    return network.eval()
