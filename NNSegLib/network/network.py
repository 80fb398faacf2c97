"""The U-Net of METHOD.md §4, built from a :class:`~NNSegLib.planning.plans.ConfigurationPlan`.

Encoder stage ``s``: ``n_conv_per_stage`` × (conv → instance norm → leaky ReLU 0.01), the
first conv strided by ``strides[s]``. Decoder stage: transposed conv (kernel = stride) →
concat with the skip → ``n_conv_per_stage_decoder`` convs; a 1×1 segmentation head (with
bias) per decoder stage. With deep supervision in training mode ``forward`` returns one
logit map per decoder stage, highest resolution first; otherwise only the top head runs
and one tensor is returned.

Mapping to nnU-Net v2 ``PlainConvUNet`` (dynamic_network_architectures). Modules are
registered in the same order, so parameters also enumerate in the same order
(:func:`parameter_order`) with equal shapes; names map as:

===============================================  ===============================================
ours                                             nnU-Net v2
===============================================  ===============================================
``encoder.stages.{s}.convs.{i}.conv.weight``     ``encoder.stages.{s}.0.convs.{i}.conv.weight``
(no conv bias by default, see below)             ``encoder.stages.{s}.0.convs.{i}.conv.bias``
``encoder.stages.{s}.convs.{i}.norm.{weight,bias}``  ``encoder.stages.{s}.0.convs.{i}.norm.{…}``
``decoder.stages.{s}.convs.{i}.conv.weight``     ``decoder.stages.{s}.convs.{i}.conv.weight``
``decoder.stages.{s}.convs.{i}.norm.{weight,bias}``  same name
``decoder.transpconvs.{s}.{weight,bias}``        same name
``decoder.seg_layers.{s}.{weight,bias}``         same name
===============================================  ===============================================

nnU-Net state dicts also hold aliases (``….all_modules.{k}.…`` and ``decoder.encoder.…``);
ignore them. Their conv biases (on convs followed by instance norm) can be dropped when
loading: instance norm subtracts every per-channel constant, so the outputs are the same
(up to float rounding). :func:`nnunet_name` gives the nnU-Net name of one of ours.

Speed options (:class:`NetworkOptions`): no conv bias before a norm (saves a reduction in
every backward), instance norm computed by PyTorch's group-norm kernels (one channel per
group; 2.5x faster than its instance norm), optional channels-last memory format and
``torch.compile``; mixed precision through :func:`autocast_context` (bf16 is ~2x faster
on CPUs with AMX/AVX512-BF16). See ``bench/bench_network.py`` for measurements.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from NNSegLib.network.blocks import NORM_ACT_IMPLS, StackedConvs, conv_class, transposed_conv_class
from NNSegLib.planning.plans import ConfigurationPlan
from NNSegLib.util.precision import PRECISIONS, device_capabilities

MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


@dataclass(frozen=True)
class NetworkOptions:
    """How the network is computed; none of these change what it computes.

    Attributes:
        conv_bias: Bias on the convs that feed an instance norm (redundant; nnU-Net has it).
        norm_impl: Key of :data:`NNSegLib.network.blocks.NORM_ACT_IMPLS`.
        memory_format: ``"auto"`` (channels-last on CPU, contiguous elsewhere, see
            :func:`resolve_memory_format`), ``"channels_last"`` or ``"contiguous"``.
        compile: Wrap the network with ``torch.compile`` in :func:`prepare_network`.
    """

    conv_bias: bool = False
    norm_impl: str = "auto"
    memory_format: str = "auto"
    compile: bool = False

    def __post_init__(self) -> None:
        if self.norm_impl not in NORM_ACT_IMPLS:
            raise ValueError(f"norm_impl {self.norm_impl!r} not in {sorted(NORM_ACT_IMPLS)}")
        if self.memory_format not in MEMORY_FORMATS:
            raise ValueError(f"memory_format {self.memory_format!r} not in {MEMORY_FORMATS}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetworkOptions:
        return cls(**d)


# nnU-Net v2 PlainConvUNet, the way nnU-Net itself builds it (the "plain" reference).
NNUNET_LIKE = NetworkOptions(conv_bias=True, norm_impl="torch", memory_format="contiguous")


class Encoder(nn.Module):
    """Encoder stages; ``forward`` returns every stage's output (the skips)."""

    def __init__(self, config: ConfigurationPlan, in_channels: int,
                 options: NetworkOptions) -> None:
        super().__init__()
        stages = []
        channels = in_channels
        for s in range(config.num_stages):
            stages.append(StackedConvs(
                config.n_conv_per_stage, config.spatial_dims, channels,
                config.features_per_stage[s], config.kernel_sizes[s], config.strides[s],
                options.conv_bias, options.norm_impl))
            channels = config.features_per_stage[s]
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # noqa: D102
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        return skips


class Decoder(nn.Module):
    """Decoder stages, lowest resolution first (nnU-Net's order)."""

    def __init__(self, config: ConfigurationPlan, num_classes: int,
                 options: NetworkOptions) -> None:
        super().__init__()
        dims, feats = config.spatial_dims, config.features_per_stage
        stages, transpconvs, seg_layers = [], [], []
        for s in range(1, config.num_stages):
            below, skip = feats[-s], feats[-(s + 1)]
            stride = tuple(config.strides[-s])
            transpconvs.append(transposed_conv_class(dims)(below, skip, stride, stride,
                                                           bias=True))
            stages.append(StackedConvs(
                config.n_conv_per_stage_decoder, dims, 2 * skip, skip,
                config.kernel_sizes[-(s + 1)], (1,) * dims, options.conv_bias,
                options.norm_impl))
            seg_layers.append(conv_class(dims)(skip, num_classes, 1, 1, 0, bias=True))
        self.stages = nn.ModuleList(stages)
        self.transpconvs = nn.ModuleList(transpconvs)
        self.seg_layers = nn.ModuleList(seg_layers)

    def forward(self, skips: list[torch.Tensor], all_heads: bool) -> list[torch.Tensor]:
        """Logits per decoder stage, highest resolution first (only the top one unless
        ``all_heads``)."""
        x = skips[-1]
        outputs = []
        last = len(self.stages) - 1
        for s in range(len(self.stages)):
            x = self.transpconvs[s](x)
            x = self.stages[s](torch.cat((x, skips[-(s + 2)]), 1))
            if all_heads or s == last:
                outputs.append(self.seg_layers[s](x))
        return outputs[::-1]


class UNet(nn.Module):
    """Plain-conv U-Net (see the module docstring for the nnU-Net name mapping).

    Attributes:
        deep_supervision: When true and in training mode, ``forward`` returns a list.
        memory_format: The torch memory format inputs are converted to.
    """

    def __init__(self, config: ConfigurationPlan, in_channels: int, num_classes: int,
                 deep_supervision: bool = True, options: NetworkOptions | None = None) -> None:
        super().__init__()
        _check_config(config)
        self.options = options or NetworkOptions()
        self.spatial_dims = config.spatial_dims
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.deep_supervision = deep_supervision
        self.memory_format = torch.contiguous_format
        self.encoder = Encoder(config, in_channels, self.options)
        self.decoder = Decoder(config, num_classes, self.options)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Logits ``(B, num_classes, *spatial)``, or a list of them (deep supervision)."""
        x = x.contiguous(memory_format=self.memory_format)
        all_heads = self.deep_supervision and self.training
        outputs = self.decoder(self.encoder(x), all_heads)
        return outputs if all_heads else outputs[0]

    def set_memory_format(self, memory_format: torch.memory_format) -> UNet:
        """Convert parameters and future inputs to ``memory_format`` (in place)."""
        self.memory_format = memory_format
        for p in self.parameters():
            if p.ndim == self.spatial_dims + 2:
                # ``to`` also restrides weights whose layout is ambiguous (one input channel:
                # the first convolution), which ``contiguous`` leaves as they are; oneDNN
                # then keeps that convolution's output channels-last too.
                p.data = p.data.to(memory_format=memory_format)
        return self


def _check_config(config: ConfigurationPlan) -> None:
    n = config.num_stages
    if config.spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {config.spatial_dims}")
    if not (len(config.kernel_sizes) == len(config.features_per_stage) == n):
        raise ValueError(f"{config.name}: strides, kernel_sizes and features_per_stage must have"
                         f" one entry per stage ({n})")
    for seq in (*config.strides, *config.kernel_sizes):
        if len(seq) != config.spatial_dims:
            raise ValueError(f"{config.name}: kernel/stride {seq} does not have "
                             f"{config.spatial_dims} values")


def _init_weights(module: nn.Module) -> None:
    """He (Kaiming normal) init for the leaky ReLU slope; zero biases."""
    if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        nn.init.kaiming_normal_(module.weight, a=1e-2)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def build_network(config: ConfigurationPlan, in_channels: int, num_classes: int,
                  deep_supervision: bool = True,
                  options: NetworkOptions | None = None) -> UNet:
    """Build the U-Net of a plan configuration (on the CPU, contiguous; see
    :func:`prepare_network` for device placement and memory format).

    Args:
        config: The configuration plan (kernels, strides, features, convs per stage).
        in_channels: Input channels (image channels, plus classes for a cascade stage).
        num_classes: Output classes including background.
        deep_supervision: Return all decoder heads in training mode.
        options: Computation options (default :class:`NetworkOptions`).
    """
    return UNet(config, in_channels, num_classes, deep_supervision, options)


def resolve_memory_format(option: str, device: torch.device | str) -> str:
    """``"channels_last"`` or ``"contiguous"`` for ``option`` on ``device``.

    ``auto`` is channels-last on CPU and contiguous elsewhere. On CPU, oneDNN runs
    channels-last 3D convolutions without converting every input and output to its blocked
    layout and back: the full-resolution 32-channel convolution of a Hippocampus step ran
    1.3x faster in fp32 and 3.2x faster in bf16 than on contiguous tensors, and with the
    ``"gemm"`` instance-norm backward (:mod:`NNSegLib.network.blocks`) a whole training
    step 1.2x (fp32) and 1.6x (bf16) faster (``bench/profile_train_step.py``). CUDA and
    MPS keep the contiguous layout, the one their 3D convolutions were tested with here.
    """
    if option in ("channels_last", "contiguous"):
        return option
    return "channels_last" if torch.device(device).type == "cpu" else "contiguous"


def prepare_network(net: UNet, device: torch.device | str) -> nn.Module:
    """Move ``net`` to ``device`` in its preferred memory format; compile if asked.

    Returns the module to call (``net`` itself, or its compiled wrapper that shares the
    parameters; save ``net.state_dict()``, not the wrapper's).
    """
    device = torch.device(device)
    net.to(device)
    if resolve_memory_format(net.options.memory_format, device) == "channels_last":
        last = torch.channels_last_3d if net.spatial_dims == 3 else torch.channels_last
        net.set_memory_format(last)
    else:
        net.set_memory_format(torch.contiguous_format)
    if net.options.compile:
        return torch.compile(net)  # type: ignore[return-value]  # a Module at run time
    return net


def autocast_context(device: torch.device | str, precision: str = "fp32"):
    """A ``torch.autocast`` context for ``precision`` (``fp32`` → disabled), as asked.

    Which precision a device should use is decided by
    :func:`NNSegLib.util.precision.choose_precision`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} not in {PRECISIONS}")
    device_type = torch.device(device).type
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type, dtype=dtype, enabled=precision != "fp32")


def fast_bf16_available(device: torch.device | str) -> bool:
    """Whether bf16 runs on native hardware on ``device`` (CUDA Ampere or later, or a CPU
    with AMX or AVX512-BF16, where oneDNN convolutions are about 2x faster than fp32); see
    :class:`NNSegLib.util.precision.DeviceCapabilities`."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        return False
    return device_capabilities(device).bf16


def parameter_order(net: nn.Module) -> list[str]:
    """Names of ``net``'s parameters in registration order (nnU-Net's order, see module doc)."""
    return [name for name, _ in net.named_parameters()]


_ENCODER_NAME = re.compile(r"^encoder\.stages\.(\d+)\.convs\.")


def nnunet_name(name: str) -> str:
    """nnU-Net v2 ``PlainConvUNet`` state-dict name of our parameter ``name``."""
    return _ENCODER_NAME.sub(lambda m: f"encoder.stages.{m.group(1)}.0.convs.", name)


def count_parameters(net: nn.Module) -> int:
    """Number of trainable scalars."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def output_shapes(config: ConfigurationPlan, patch_size: Sequence[int] | None = None
                  ) -> list[tuple[int, ...]]:
    """Spatial shapes of the deep-supervision outputs, highest resolution first."""
    shape = tuple(patch_size or config.patch_size)
    shapes = []
    for stride in config.strides[:-1]:
        shape = tuple(s // k for s, k in zip(shape, stride))
        shapes.append(shape)
    return shapes


__all__ = [
    "MEMORY_FORMATS",
    "NNUNET_LIKE",
    "PRECISIONS",
    "NetworkOptions",
    "UNet",
    "autocast_context",
    "build_network",
    "count_parameters",
    "fast_bf16_available",
    "nnunet_name",
    "output_shapes",
    "parameter_order",
    "prepare_network",
    "resolve_memory_format",
]
