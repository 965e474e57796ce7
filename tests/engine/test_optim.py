from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from detection.engine.ema import ModelEMA
from detection.engine.optim import amp_dtype, build_optimizer, cpu_has_fast_bf16, lr_factor, param_groups


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2), nn.LayerNorm(2))


def test_no_weight_decay_on_norms_and_biases() -> None:
    net = _net()
    net(torch.rand(1, 3, 8, 8))
    decay, no_decay = param_groups(net, 1e-4)
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    assert ids(decay["params"]) == {id(net[0].weight), id(net[4].weight)}
    assert ids(no_decay["params"]) == {id(p) for p in (net[0].bias, net[1].weight, net[1].bias, net[4].bias, net[5].weight, net[5].bias)}


@pytest.mark.parametrize(("name", "cls"), [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_optimizers(name: str, cls: type) -> None:
    net = _net()
    net(torch.rand(1, 3, 8, 8))
    opt = build_optimizer(net, name, lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True)
    assert isinstance(opt, cls) and len(opt.param_groups) == 2


def test_warmup_is_linear_in_iterations_then_cosine_to_the_floor() -> None:
    f = lr_factor("cosine", total_iters=100, iters_per_epoch=10, warmup_iters=10, floor=0.05)
    assert f(0) == pytest.approx(0.001) and f(5) == pytest.approx(0.001 + 0.999 * 0.5)
    assert f(10) == pytest.approx(1.0) and f(100) == pytest.approx(0.05)
    assert all(f(i) >= f(i + 1) for i in range(10, 100))


def test_multistep_restarts_and_onecycle() -> None:
    m = lr_factor("multistep", 100, 10, warmup_iters=0, milestones=(3, 6), gamma=0.1)
    assert (m(29), m(30), m(59), m(60)) == pytest.approx((1, 0.1, 0.1, 0.01))
    r = lr_factor("cosine_restarts", 100, 10, warmup_iters=0, floor=0.0, restart_epochs=2)
    assert r(0) == pytest.approx(1) and r(10) == pytest.approx(0.5) and r(20) == pytest.approx(1)
    o = lr_factor("onecycle", 100, 10, warmup_iters=0, floor=0.05)
    peak = max(range(100), key=o)
    assert peak == 30 and o(0) == pytest.approx(1 / 25) and o(99) < 0.01
    with pytest.raises(ValueError, match="schedule"):
        lr_factor("linear", 100, 10)(50)


def test_amp_choice_follows_the_device() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert amp_dtype("auto", cpu) is None and amp_dtype("off", cuda) is None
    assert amp_dtype("auto", cuda) == torch.float16 and amp_dtype("on", cpu) == torch.bfloat16


def test_bf16_on_a_cpu_without_native_bf16_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="detection.engine.optim"):
        assert amp_dtype("on", torch.device("cpu")) == torch.bfloat16  # still the user's choice
    warned = "without native bf16" in caplog.text
    assert warned == (not cpu_has_fast_bf16())  # this CPU (AVX2, no AVX512-BF16/AMX): emulated, ~20x slower


def test_ema_moves_towards_the_weights_and_round_trips() -> None:
    net = nn.Linear(2, 1)
    ema = ModelEMA(net, decay=0.5, tau=1)
    with torch.no_grad():
        net.weight.add_(1.0)
    before = ema.module.weight.clone()
    ema.update(net)
    d = 0.5 * (1 - math.exp(-1))
    assert torch.allclose(ema.module.weight, d * before + (1 - d) * net.weight)
    other = ModelEMA(nn.Linear(2, 1))
    other.load_state_dict(ema.state_dict())
    assert other.updates == 1 and torch.equal(other.module.weight, ema.module.weight)


def test_ema_follows_in_place_optimizer_steps_and_copies_integer_buffers() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = ModelEMA(net, decay=0.9, tau=1)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    expected = {k: v.clone() for k, v in ema.module.state_dict().items()}
    for _ in range(3):
        net(torch.randn(8, 3)).sum().backward()
        opt.step()
        opt.zero_grad()
        ema.update(net)
        d = 0.9 * (1 - math.exp(-ema.updates))
        for k, v in net.state_dict().items():
            expected[k] = d * expected[k] + (1 - d) * v if v.dtype.is_floating_point else v.clone()
    for k, v in ema.module.state_dict().items():
        assert torch.allclose(v, expected[k], atol=1e-6), k
    assert int(ema.module[1].num_batches_tracked) == 3
