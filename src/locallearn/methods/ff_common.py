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
    """`method.*` keys of the FF goodness objective and of the probe features (shared by the FF methods)."""

    goodness: Literal["sum", "mean"] = Field("sum", description="Goodness of a layer: sum or mean of its squared activities.")
    goodness_over: Literal["example", "position"] = Field("example", description="One goodness per example, or per position of a spatial (conv, locally connected) output.")
    goodness_groups: int = Field(1, gt=0, description="Channel groups, each with its own goodness (must divide every width).")
    loss: Literal["softplus", "symba"] = Field("softplus", description="softplus (the paper's logistic loss around the threshold) or symba (softplus(-alpha(G_pos - G_neg)), no threshold).")
    threshold: Optional[float] = Field(None, description="Goodness threshold of the softplus loss (null = the width for sum, 1 for mean).")
    temperature: float = Field(1.0, gt=0, description="T in softplus((threshold - G)/T): 1 is the paper's; larger keeps pulling examples already past the threshold, towards a margin.")
    symba_alpha: Optional[float] = Field(None, gt=0, description="SymBa's sharpness alpha (null = the paper's 4 divided by the default threshold, so sum and mean goodness give the same loss).")
    peer_weight: float = Field(0.0, ge=0, description="Weight of Hinton's peer normalisation, pushing each unit's mean activity towards the layer's (0 = off).")
    peer_momentum: float = Field(0.9, ge=0, lt=1, description="Momentum of the running mean activity that peer normalisation uses.")
    probe_pool: int = Field(2, gt=0, description="Spatial outputs are average-pooled to at most this many positions per axis for probes.")


def ff_objective(o: FFOptions, width: int) -> FFGoodnessLoss:
    return FFGoodnessLoss(width, o.goodness, o.loss, o.threshold, o.temperature, o.symba_alpha, o.peer_weight, o.peer_momentum, o.goodness_over, o.goodness_groups)


def probe_features(outputs: list[torch.Tensor], pool: int) -> list[torch.Tensor]:
    """Each block's output as (B, F) features: spatial outputs average-pooled to at most `pool` x `pool`, then RMS-normalised."""
    return [FEATURE_NORM(flat_features(out, pool)) for out in outputs]


class ScoreOptions(MethodOptions):
    """Which blocks' goodness the classifier sums (for nets whose deeper blocks classify worse than the first ones)."""

    skip_first: bool = Field(False, description="The goodness classifier leaves out the first block (Hinton's choice).")
    score_depth: Optional[int] = Field(None, gt=0, description="The goodness classifier sums only the first N blocks (null = every block); changes only scoring, so locallearn eval can rescore.")

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
