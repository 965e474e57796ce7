"""Exponential moving average of a model's weights (with the warm-up ramp of the usual detectors)."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn


class ModelEMA:
    """``ema = d * ema + (1 - d) * model`` after each optimizer step, ``d = decay * (1 - exp(-updates / tau))``.

    Float buffers (BatchNorm statistics) are averaged too; integer buffers are copied.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9998, tau: int = 2000) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, 0
        self._source: nn.Module | None = None
        self._floats: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
        self._others: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])

    def _pair(self, model: nn.Module) -> None:
        """Pair the EMA's tensors with ``model``'s once (state-dict views share the tensors' storage, and
        optimizers and ``load_state_dict`` update in place), not two state dicts per optimizer step."""
        floats: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
        others: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
        for ema_v, v in zip(self.module.state_dict().values(), model.state_dict().values(), strict=True):
            group = floats if ema_v.dtype.is_floating_point else others
            group[0].append(ema_v)
            group[1].append(v)
        self._source, self._floats, self._others = model, floats, others

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        if model is not self._source:
            self._pair(model)
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        if self._floats[0]:
            torch._foreach_mul_(self._floats[0], d)
            torch._foreach_add_(self._floats[0], self._floats[1], alpha=1 - d)
        for ema_v, v in zip(*self._others, strict=True):
            ema_v.copy_(v)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["model"])
        self.updates = int(state["updates"])
