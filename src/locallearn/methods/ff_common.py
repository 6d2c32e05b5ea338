"""What every Forward-Forward method shares: the goodness options, the block objective, probe features."""

from __future__ import annotations

from typing import Literal, Optional

import torch
from pydantic import Field, model_validator

from locallearn.methods.base import MethodOptions, flat_features
from locallearn.nn.layers import InputNorm
from locallearn.objectives.goodness import FFGoodnessLoss

FEATURE_NORM = InputNorm("rms")


class FFOptions(MethodOptions):
    """`method.*` keys of the FF goodness objective and of the probe features.

    `goodness_over`: one goodness per example, or per position of a spatial output;
    `goodness_groups`: channel groups, each with its own goodness (must divide every width);
    `probe_pool`: spatial outputs are average-pooled to at most this many positions per axis for probes.
    """

    goodness: Literal["sum", "mean"] = "sum"
    goodness_over: Literal["example", "position"] = "example"
    goodness_groups: int = Field(1, gt=0)
    loss: Literal["softplus", "symba"] = "softplus"
    threshold: Optional[float] = None
    temperature: float = Field(1.0, gt=0)
    symba_alpha: Optional[float] = Field(None, gt=0)  # null = 4 (the SymBa paper's) over the default threshold (units for sum, 1 for mean): one loss for both
    peer_weight: float = Field(0.0, ge=0)
    peer_momentum: float = Field(0.9, ge=0, lt=1)
    probe_pool: int = Field(2, gt=0)


def ff_objective(o: FFOptions, width: int) -> FFGoodnessLoss:
    return FFGoodnessLoss(width, o.goodness, o.loss, o.threshold, o.temperature, o.symba_alpha, o.peer_weight, o.peer_momentum, o.goodness_over, o.goodness_groups)


def probe_features(outputs: list[torch.Tensor], pool: int) -> list[torch.Tensor]:
    """Each block's output as (B, F) features: spatial outputs average-pooled to at most `pool` x `pool`, then RMS-normalised."""
    return [FEATURE_NORM(flat_features(out, pool)) for out in outputs]


class ScoreOptions(MethodOptions):
    """Which blocks' goodness the classifier sums: `skip_first` leaves out the first (Hinton);
    `score_depth` stops after that many blocks (null = every block), e.g. 2 with `skip_first`
    false sums blocks 1-2, for nets whose deeper blocks classify worse than the first ones."""

    skip_first: bool = False
    score_depth: Optional[int] = Field(None, gt=0)

    @model_validator(mode="after")
    def _some_block_is_scored(self):
        if self.skip_first and self.score_depth == 1:
            raise ValueError("score_depth=1 with skip_first=true leaves no block to sum; use score_depth >= 2 or skip_first=false")
        return self


def block_and_summed_scores(net, per_block: list[torch.Tensor], options: ScoreOptions) -> dict[str, torch.Tensor]:
    """Each block's (B, C) scores by name, and "goodness": the sum over the blocks `options` names."""
    start = 1 if options.skip_first and len(per_block) > 1 else 0
    used = per_block[start : options.score_depth]
    scores = {block.name: s for block, s in zip(net.blocks, per_block)}
    scores["goodness"] = torch.stack(used).sum(dim=0)
    return scores
