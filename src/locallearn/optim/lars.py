"""LARS (You et al. 2017), the optimizer of Barlow Twins and of the block-wise paper's ImageNet runs.

SGD with momentum whose step for each weight matrix is rescaled by the trust ratio
`trust_coefficient * |w| / |g + weight_decay * w|`, so every layer moves by a similar
fraction of its norm whatever the batch size. As in those papers, biases and
normalisation parameters (one-dimensional tensors) get neither weight decay nor the
rescaling: for them it is plain SGD with momentum.

Example:
    >>> optimizer = LARS(model.parameters(), lr=0.2, momentum=0.9, weight_decay=1.5e-6)
"""

from __future__ import annotations

import torch


class LARS(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, trust_coefficient: float = 0.001):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, trust_coefficient=trust_coefficient))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if p.ndim > 1:
                    g = g.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    trust = torch.where((w_norm > 0) & (g_norm > 0), group["trust_coefficient"] * w_norm / g_norm, torch.ones_like(w_norm))
                    g = g.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buffer = state["momentum_buffer"].mul_(group["momentum"]).add_(g)
                p.add_(buffer, alpha=-group["lr"])
        return loss
