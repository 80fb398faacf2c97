"""Tests of NNSegLib.network (network, blocks): sizes, shapes, nnU-Net order, equivalence."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from NNSegLib.network.blocks import NORM_ACT_IMPLS, InstanceNormAct, set_norm_impl
from NNSegLib.network.network import (
    NNUNET_LIKE,
    NetworkOptions,
    autocast_context,
    build_network,
    count_parameters,
    fast_bf16_available,
    nnunet_name,
    output_shapes,
    parameter_order,
    prepare_network,
    resolve_memory_format,
)
from NNSegLib.planning.plans import ConfigurationPlan


def plan(patch, strides, kernels, feats, n_conv=2, n_conv_dec=2) -> ConfigurationPlan:
    return ConfigurationPlan(
        name="t", spatial_dims=len(patch), data_identifier="t", spacing=(1.0, 1.0, 1.0),
        median_shape=(1, 1, 1), patch_size=tuple(patch), batch_size=2,
        strides=tuple(map(tuple, strides)), kernel_sizes=tuple(map(tuple, kernels)),
        features_per_stage=tuple(feats), n_conv_per_stage=n_conv,
        n_conv_per_stage_decoder=n_conv_dec)


PLANS = {
    "2d": plan((32, 24), [(1, 1), (2, 2), (2, 2)], [(3, 3)] * 3, (4, 8, 16)),
    "3d_iso": plan((16, 16, 16), [(1, 1, 1), (2, 2, 2), (2, 2, 2)], [(3, 3, 3)] * 3, (4, 8, 16)),
    "3d_aniso": plan((8, 32, 24), [(1, 1, 1), (1, 2, 2), (2, 2, 2), (1, 2, 2)],
                     [(1, 3, 3), (1, 3, 3), (3, 3, 3), (3, 3, 3)], (4, 8, 16, 16), 3, 1),
}


def expected_parameters(cfg: ConfigurationPlan, cin: int, ncls: int, conv_bias: bool) -> int:
    """nnU-Net PlainConvUNet parameter count from first principles."""
    def conv(ci, co, k):
        return ci * co * math.prod(k) + (co if conv_bias else 0) + 2 * co  # + norm affine
    total, c = 0, cin
    for s, f in enumerate(cfg.features_per_stage):
        k = cfg.kernel_sizes[s]
        total += conv(c, f, k) + (cfg.n_conv_per_stage - 1) * conv(f, f, k)
        c = f
    feats = cfg.features_per_stage
    for s in range(len(feats) - 1, 0, -1):
        below, skip, k = feats[s], feats[s - 1], cfg.kernel_sizes[s - 1]
        total += below * skip * math.prod(cfg.strides[s]) + skip  # transposed conv + bias
        total += conv(2 * skip, skip, k) + (cfg.n_conv_per_stage_decoder - 1) * conv(skip, skip, k)
        total += skip * ncls + ncls  # head
    return total


@pytest.mark.parametrize("name", sorted(PLANS))
@pytest.mark.parametrize("conv_bias", [False, True])
def test_parameter_count(name, conv_bias):
    cfg = PLANS[name]
    net = build_network(cfg, 2, 3, options=NetworkOptions(conv_bias=conv_bias))
    assert count_parameters(net) == expected_parameters(cfg, 2, 3, conv_bias)


def test_parameter_count_hippocampus_size():
    cfg = plan((40, 56, 40), [(1, 1, 1)] + [(2, 2, 2)] * 3, [(3, 3, 3)] * 4, (32, 64, 128, 256))
    assert count_parameters(build_network(cfg, 1, 3, options=NNUNET_LIKE)) == 5_603_177
    assert expected_parameters(cfg, 1, 3, True) == 5_603_177
    # biases removed: 2 convs per encoder stage, 2 per decoder stage (none at the bottleneck)
    removed = 2 * (32 + 64 + 128 + 256) + 2 * (32 + 64 + 128)
    assert count_parameters(build_network(cfg, 1, 3)) == 5_603_177 - removed


@pytest.mark.parametrize("name", sorted(PLANS))
def test_output_shapes(name):
    cfg = PLANS[name]
    torch.manual_seed(0)
    net = build_network(cfg, 1, 3)
    x = torch.randn(2, 1, *cfg.patch_size)
    outs = net.train()(x)
    assert isinstance(outs, list) and len(outs) == cfg.num_stages - 1
    assert [tuple(o.shape[2:]) for o in outs] == output_shapes(cfg)
    assert all(o.shape[:2] == (2, 3) for o in outs)
    single = net.eval()(x)
    assert isinstance(single, torch.Tensor) and tuple(single.shape) == (2, 3, *cfg.patch_size)
    assert torch.allclose(single, net.train()(x)[0], atol=1e-5)  # same top head
    net.deep_supervision = False
    assert isinstance(net.train()(x), torch.Tensor)


def test_anisotropic_shapes_explicit():
    assert output_shapes(PLANS["3d_aniso"]) == [(8, 32, 24), (8, 16, 12), (4, 8, 6)]


def test_eval_runs_only_top_head():
    cfg = PLANS["3d_iso"]
    net = build_network(cfg, 1, 2).eval()
    calls = []
    for i, layer in enumerate(net.decoder.seg_layers):
        layer.register_forward_hook(lambda m, a, o, i=i: calls.append(i))
    net(torch.randn(1, 1, *cfg.patch_size))
    assert calls == [len(net.decoder.seg_layers) - 1]


def test_parameter_order_mirrors_nnunet():
    net = build_network(PLANS["3d_iso"], 1, 3, options=NNUNET_LIKE)
    names = parameter_order(net)
    prefix = "encoder.stages.0.convs.0."
    assert names[:4] == [prefix + n for n in ("conv.weight", "conv.bias", "norm.weight",
                                              "norm.bias")]
    first = {g: next(i for i, n in enumerate(names) if n.startswith(g))
             for g in ("encoder.", "decoder.stages", "decoder.transpconvs", "decoder.seg_layers")}
    assert first["encoder."] < first["decoder.stages"] < first["decoder.transpconvs"] \
        < first["decoder.seg_layers"]
    assert nnunet_name("encoder.stages.2.convs.1.norm.bias") == \
        "encoder.stages.2.0.convs.1.norm.bias"
    assert nnunet_name("decoder.stages.0.convs.0.conv.weight") == \
        "decoder.stages.0.convs.0.conv.weight"
    shapes = dict(net.named_parameters())
    assert tuple(shapes["decoder.transpconvs.0.weight"].shape) == (16, 8, 2, 2, 2)
    assert tuple(shapes["decoder.seg_layers.1.weight"].shape) == (3, 4, 1, 1, 1)


def _randomize(net: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if p.ndim == 1:
                p.add_(0.3 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("name", ["2d", "3d_aniso"])
def test_default_matches_nnunet_like_reference(name):
    """Dropping conv biases, channels-last and the fused norm change no output."""
    cfg = PLANS[name]
    torch.manual_seed(1)
    ref = build_network(cfg, 1, 3, options=NNUNET_LIKE)
    _randomize(ref)
    x = torch.randn(2, 1, *cfg.patch_size)
    expected = ref.eval()(x)
    state = ref.state_dict()
    for options in (NetworkOptions(), NetworkOptions(norm_impl="fused"),
                    NetworkOptions(norm_impl="torch", memory_format="channels_last"),
                    NetworkOptions(memory_format="contiguous")):
        net = build_network(cfg, 1, 3, options=options)
        net.load_state_dict({k: state[k] for k in net.state_dict()})
        model = prepare_network(net, "cpu").eval()
        with torch.no_grad():
            got = model(x)
        assert (got - expected).abs().max().item() < 1e-4


def test_conv_bias_before_norm_is_exactly_redundant():
    cfg = PLANS["3d_iso"]
    ref = build_network(cfg, 1, 2, options=NNUNET_LIKE).eval()
    _randomize(ref, 3)
    x = torch.randn(1, 1, *cfg.patch_size)
    out = ref(x)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith("conv.bias"):
                p.add_(5.0)
    assert (ref(x) - out).abs().max().item() < 1e-4


def test_norm_impls_gradients_match_torch():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 6, 4, dtype=torch.float64, requires_grad=True)
    dy = torch.randn(2, 3, 5, 6, 4, dtype=torch.float64)
    grads = {}
    for impl in sorted(NORM_ACT_IMPLS):
        norm = InstanceNormAct(3, impl=impl).double()
        with torch.no_grad():
            norm.weight.copy_(torch.tensor([1.5, -0.7, 0.3]))
            norm.bias.copy_(torch.tensor([0.2, -0.1, 0.0]))
        y = norm(x * 1.0)
        y.backward(dy)
        grads[impl] = (y.detach(), x.grad.clone(), norm.weight.grad, norm.bias.grad)
        x.grad = None
    for impl in ("group", "fused", "gemm", "auto"):
        for a, b in zip(grads["torch"], grads[impl]):
            assert torch.allclose(a, b, atol=1e-9), impl


@pytest.mark.parametrize("shape", [(2, 3, 5, 6, 4), (2, 4, 7, 5), (1, 3, 4, 5, 6)])
@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
def test_gemm_norm_matches_torch_in_both_layouts(shape, layout):
    """The GEMM-statistics backward equals instance norm's, channels-last or not, 2D or 3D."""
    torch.manual_seed(3)
    x = torch.randn(*shape, dtype=torch.float64) * 2 + 0.5
    dy = torch.randn(*shape, dtype=torch.float64)
    if layout == "channels_last":
        fmt = torch.channels_last_3d if len(shape) == 5 else torch.channels_last
        x, dy = x.contiguous(memory_format=fmt), dy.contiguous(memory_format=fmt)
    results = {}
    for impl in ("torch", "gemm"):
        norm = InstanceNormAct(shape[1], impl=impl).double()
        with torch.no_grad():
            norm.weight.copy_(torch.linspace(-1.2, 1.5, shape[1]))
            norm.bias.copy_(torch.linspace(0.3, -0.2, shape[1]))
        xi = x.clone().requires_grad_()
        y = norm(xi)
        y.backward(dy)
        results[impl] = (y.detach(), xi.grad, norm.weight.grad, norm.bias.grad)
        if impl == "gemm":   # the layout survives forward and backward
            assert y.stride() == x.stride() and xi.grad.stride() == x.stride()
    for a, b in zip(results["torch"], results["gemm"]):
        assert torch.allclose(a, b, atol=1e-9)


def test_gemm_norm_takes_a_channel_slice_as_gradient():
    """A skip connection's gradient is a channel slice of the concatenation's gradient."""
    torch.manual_seed(5)
    fmt = torch.channels_last_3d
    x = (torch.randn(2, 3, 4, 5, 6, dtype=torch.float64) + 1).contiguous(memory_format=fmt)
    big = torch.randn(2, 7, 4, 5, 6, dtype=torch.float64).contiguous(memory_format=fmt)
    dy = big[:, 2:5]   # neither contiguous nor channels-last
    grads = []
    for impl, grad in (("torch", dy.contiguous()), ("gemm", dy)):
        norm = InstanceNormAct(3, impl=impl).double()
        xi = x.clone().requires_grad_()
        norm(xi).backward(grad)
        grads.append((xi.grad, norm.weight.grad, norm.bias.grad))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-9)


def test_gemm_norm_bf16_channels_last_close_to_float64():
    """In bf16 (the AMX training path) the error is that of bf16 rounding, < 1 %."""
    torch.manual_seed(4)
    x = torch.randn(2, 8, 12, 10, 9) * 3 + 1
    dy = torch.randn(2, 8, 12, 10, 9)
    ref = InstanceNormAct(8, impl="torch").double()
    xr = x.double().requires_grad_()
    ref(xr).backward(dy.double())
    norm = InstanceNormAct(8, impl="auto")
    fmt = torch.channels_last_3d
    xb = x.to(torch.bfloat16).contiguous(memory_format=fmt).requires_grad_()
    y = norm(xb)
    y.backward(dy.to(torch.bfloat16).contiguous(memory_format=fmt))
    assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=fmt)

    def rel(a, b):
        return ((a.double() - b).abs().mean() / b.abs().mean()).item()

    assert rel(y, ref(xr).detach()) < 1e-2
    assert rel(xb.grad, xr.grad) < 1e-2
    assert rel(norm.weight.grad, ref.weight.grad) < 1e-2
    assert rel(norm.bias.grad, ref.bias.grad) < 2e-2


@pytest.mark.parametrize("name", ["2d", "3d_iso"])
def test_channels_last_network_stays_channels_last(name):
    """Every block, the first one after the 1-channel input included, sees channels-last
    tensors (no layout conversions inside the network on CPU)."""
    from NNSegLib.network.blocks import is_channels_last

    cfg = PLANS[name]
    net = prepare_network(build_network(cfg, 1, 3, options=NetworkOptions()), "cpu")
    seen = []
    for m in net.modules():
        if isinstance(m, InstanceNormAct):
            m.register_forward_hook(lambda mod, inp, out: seen.append(
                is_channels_last(inp[0]) and is_channels_last(out)))
    # With one thread PyTorch runs 1×1 convolutions (the heads) outside oneDNN, and those
    # return contiguous tensors; other tests leave the thread count at 1, so set it here.
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        outputs = net(torch.randn(2, 1, *cfg.patch_size))
    finally:
        torch.set_num_threads(threads)
    assert seen and all(seen)
    assert all(is_channels_last(o) for o in outputs)


def test_fused_gradcheck_channels_last():
    torch.manual_seed(0)
    norm = InstanceNormAct(2, impl="fused").double()
    x = torch.randn(1, 2, 3, 4, 3, dtype=torch.float64)
    x = x.contiguous(memory_format=torch.channels_last_3d).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: norm(t * 1.0), (x,))


def test_training_step_matches_between_variants():
    """One SGD step from equal weights gives equal weights (default vs reference)."""
    cfg = PLANS["3d_iso"]
    torch.manual_seed(2)
    ref = build_network(cfg, 1, 2, options=NNUNET_LIKE)
    net = build_network(cfg, 1, 2, options=NetworkOptions(norm_impl="fused"))
    net.load_state_dict({k: v for k, v in ref.state_dict().items() if k in net.state_dict()})
    model = prepare_network(net, "cpu")
    x = torch.randn(2, 1, *cfg.patch_size)
    for m in (ref, model):
        loss = sum(o.square().mean() for o in m(x))
        loss.backward()
    for name, p in net.named_parameters():
        assert torch.allclose(p.grad, dict(ref.named_parameters())[name].grad, atol=1e-4), name


def test_options_round_trip_and_validation():
    opts = NetworkOptions(norm_impl="fused", memory_format="contiguous", compile=True)
    assert NetworkOptions.from_dict(opts.to_dict()) == opts
    with pytest.raises(ValueError):
        NetworkOptions(norm_impl="nope")
    with pytest.raises(ValueError):
        NetworkOptions(memory_format="sideways")
    assert resolve_memory_format("auto", torch.device("cpu")) == "channels_last"
    assert resolve_memory_format("auto", torch.device("cuda")) == "contiguous"
    assert resolve_memory_format("auto", torch.device("mps")) == "contiguous"
    assert resolve_memory_format("contiguous", torch.device("cpu")) == "contiguous"
    assert resolve_memory_format("channels_last", torch.device("cpu")) == "channels_last"


def test_channels_last_parameters_and_norm_switch():
    options = NetworkOptions(memory_format="channels_last")
    net = build_network(PLANS["3d_iso"], 1, 2, options=options)
    net = prepare_network(net, "cpu")
    w = net.encoder.stages[0].convs[1].conv.weight
    assert w.is_contiguous(memory_format=torch.channels_last_3d) and not w.is_contiguous()
    set_norm_impl(net, "fused")
    assert {m.impl for m in net.modules() if isinstance(m, InstanceNormAct)} == {"fused"}


def test_autocast_context():
    with autocast_context("cpu", "bf16"):
        y = torch.nn.functional.linear(torch.randn(2, 4), torch.randn(3, 4))
    assert y.dtype == torch.bfloat16
    with autocast_context("cpu", "fp32"):
        y = torch.nn.functional.linear(torch.randn(2, 4), torch.randn(3, 4))
    assert y.dtype == torch.float32
    with pytest.raises(ValueError):
        autocast_context("cpu", "fp8")
    assert isinstance(fast_bf16_available("cpu"), bool)
    assert fast_bf16_available("meta") is False


def test_bad_plan_rejected():
    cfg = dataclasses.replace(PLANS["3d_iso"], kernel_sizes=((3, 3),) * 3)
    with pytest.raises(ValueError):
        build_network(cfg, 1, 2)


def test_bf16_autocast_training_step_close_to_fp32():
    cfg = PLANS["3d_iso"]
    torch.manual_seed(4)
    net = prepare_network(build_network(cfg, 1, 3), "cpu")
    x = torch.randn(2, 1, *cfg.patch_size)
    ref = net(x)
    with autocast_context("cpu", "bf16"):
        low = net(x)
    assert low[0].dtype == torch.bfloat16
    for a, b in zip(ref, low):
        corr = torch.corrcoef(torch.stack([a.flatten(), b.float().flatten()]))[0, 1]
        assert corr.item() > 0.99
    sum(o.float().square().mean() for o in low).backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all()
               for g in grads)
