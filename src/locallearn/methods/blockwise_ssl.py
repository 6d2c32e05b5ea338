"""Block-wise self-supervised learning (Siddiqui, Krueger, LeCun & Deny, 2023).

Every image gives two augmented views (`views.augment`); the step's input is view 1 then
view 2. Each block has its own head (`expand` 1x1-conv expansion, global average pool,
`projector` MLP) and its own loss between the two views' embeddings: Barlow Twins, VICReg
or SimCLR's InfoNCE (`loss`), or DINO's self-distillation from a momentum teacher of the
block and head (`loss: dino`, `method.dino.*`; the teacher and centre move in `after_step`,
and `method.dino.local_crops` adds multi-crop's small crops). Where the graph is cut is
`train.granularity` alone: `block:4` on a ResNet is the paper's four stage-blocks, `end-to-end` the same network and
loss trained by plain backprop (its baseline). The network has no classifier of its own:
accuracy is that of linear probes on the frozen, average-pooled features of each block
(`probe_pool`: global pooling as the paper, or a coarse grid of positions).
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
from pydantic import Field
from torch import nn

from locallearn.errors import UsageError
from locallearn.methods.base import Method, MethodOptions, flat_features
from locallearn.nn.heads import DINOHead, PoolProjector
from locallearn.nn.network import LocalNet
from locallearn.nn.teacher import momentum_schedule
from locallearn.objectives.dino import DINOLoss, DINOObjective, DINOOptions
from locallearn.objectives.reconstruction import with_reconstruction
from locallearn.objectives.ssl import BarlowTwinsLoss, InfoNCELoss, SSLObjective, VICRegLoss
from locallearn.views.augment import AugmentOptions
from locallearn.views.base import Views
from locallearn.views.multicrop import multi_crop


def dino_objective(o, width: int) -> DINOObjective:
    d = o.dino
    head = DINOHead(width, o.expand, o.projector, d.prototypes, o.head_convs)
    return DINOObjective(head, DINOLoss(d.prototypes, d.student_temperature, d.teacher_temperature, d.centre_momentum))


OBJECTIVES: dict[str, Callable[..., nn.Module]] = {
    "barlow": lambda o, width: SSLObjective(PoolProjector(width, o.expand, o.projector, o.head_convs), BarlowTwinsLoss(o.lambd)),
    "vicreg": lambda o, width: SSLObjective(PoolProjector(width, o.expand, o.projector, o.head_convs), VICRegLoss(o.sim_weight, o.var_weight, o.cov_weight)),
    "simclr": lambda o, width: SSLObjective(PoolProjector(width, o.expand, o.projector, o.head_convs), InfoNCELoss(o.temperature)),
    "dino": dino_objective,
}
"""Each `method.loss` and the builder of a block's objective from the options and the block's output width."""


class BlockwiseSSLOptions(MethodOptions):
    """`method.*` keys of `blockwise-ssl`: the loss, the heads, the probes and the views (each key's meaning is its description)."""

    loss: Literal[tuple(OBJECTIVES)] = Field("barlow", description="Each block's self-supervised loss: barlow (Barlow Twins), vicreg, simclr (InfoNCE) or dino (a teacher-student objective).")
    lambd: float = Field(5.1e-3, ge=0, description="barlow: weight of the off-diagonal terms of the cross-correlation.")
    sim_weight: float = Field(25.0, ge=0, description="vicreg: weight of the invariance (mean squared distance) term.")
    var_weight: float = Field(25.0, ge=0, description="vicreg: weight of the variance (hinge on each dimension's std) term.")
    cov_weight: float = Field(1.0, ge=0, description="vicreg: weight of the covariance (off-diagonal) term.")
    temperature: float = Field(0.1, gt=0, description="simclr: temperature of the InfoNCE softmax.")
    expand: int = Field(0, ge=0, description="Channels of the head's 1x1-conv expansion before pooling (0 = none).")
    projector: list[int] = Field(default_factory=lambda: [512, 512], description="Widths of the projector MLP's linear layers ([] = no projector).")
    probe_pool: int = Field(1, gt=0, description="Block outputs are average-pooled to at most this many positions per axis for probes (1 = global pooling).")
    readout_last: int = Field(1, gt=0, description="The linear readout reads the last this many blocks.")
    head_convs: int = Field(0, ge=0, description="3x3 conv + BatchNorm + ReLU layers (at the block's width) at the start of each block's head, before its expansion and pool (deeper local heads; 0 = none)")
    recon_weight: float = Field(0.0, ge=0, description="weight of InfoPro's term added to each block's loss: a decoder's mean squared error in rebuilding the input views from the block's output (0 = off)")
    augment: AugmentOptions = Field(default_factory=AugmentOptions, description="The two views' augmentations (the method.augment.* keys).")
    dino: DINOOptions = Field(default_factory=DINOOptions, description="DINO's prototypes, temperatures, momenta and multi-crop (used with loss: dino)")


class BlockwiseSSL(Method):
    """Two augmented views per image; each block's own pool + projector head and SSL loss.

    Example:
        >>> trainer = Trainer(load_config("blockwise-barlow", ["train.granularity=end-to-end"]), data)   # = e2e-barlow
    """

    name = "blockwise-ssl"
    Options = BlockwiseSSLOptions
    primary = "readout"

    @property
    def supports_pipeline(self) -> bool:
        """False with DINO's small crops: they travel from block to block in the views, which pipeline stages and device placement do not carry."""
        return not (self.options.loss == "dino" and self.options.dino.local_crops)

    pipeline_refusal = "DINO's small crops (method.dino.local_crops) travel from block to block in the views, which pipeline stages and device placement do not carry"

    def objective(self, index: int, num_blocks: int, width: int) -> nn.Module:
        o = self.options
        if o.loss == "dino" and o.recon_weight:
            raise UsageError("method.recon_weight does not combine with method.loss=dino (the decoder would hide the teacher from the method's hooks); use method.recon_weight=0")
        return with_reconstruction(OBJECTIVES[o.loss](o, width), width, self.data.image_shape[0], o.recon_weight)

    def make_views(self, x, y, index, generator) -> Views:
        o = self.options
        crops = o.dino.local_crops if o.loss == "dino" else 0
        return multi_crop(x, o.augment, self.data.pixel_low, self.data.pixel_high, generator, crops, o.dino.local_size, tuple(o.dino.local_scale))

    def after_step(self, net: LocalNet, step: int, total_steps: int) -> None:
        """DINO: each block's teacher moves towards its student (momentum on a cosine schedule to 1), the centre towards the batch."""
        if self.options.loss == "dino":
            momentum = momentum_schedule(self.options.dino.teacher_momentum, step, total_steps)
            for block in net.blocks:
                block.objective.update(block.layers, momentum)

    def predict(self, net: LocalNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}

    def features(self, net: LocalNet, x: torch.Tensor) -> list[torch.Tensor]:
        """Each block's output, average-pooled to at most `probe_pool` x `probe_pool` positions, as (B, F)."""
        return [flat_features(out, self.options.probe_pool) for out in net.forward_blocks(x)]

    def readout_blocks(self, num_blocks: int) -> list[int]:
        return list(range(max(num_blocks - self.options.readout_last, 0), num_blocks))
