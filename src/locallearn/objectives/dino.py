"""DINO (Caron et al. 2021) as a local objective: self-distillation from a momentum teacher.

A block's student head maps its output to prototype scores; its teacher is an exponential
moving average of the block's layers *and* head (`bind` makes the copy, the method's
`after_step` moves it, see `locallearn.nn.teacher`). The teacher's scores are centred (a
running centre, a buffer, so checkpoints keep it) and sharpened by a low temperature; the
loss is the cross-entropy from each teacher view to every *other* student view. Only the
two large crops go through the teacher; small crops (multi-crop) are student views only.

The math is the pure function `dino_terms`, tested against a direct computation.

Example:
    >>> objective = DINOObjective(DINOHead(256, widths=[512, 128], prototypes=1024), DINOLoss(1024))
    >>> objective.bind(block_layers)                      # the teacher: a frozen copy of layers + head
    >>> loss, metrics = objective(block_output, views, inputs=block_input)
    >>> objective.update(block_layers, momentum=0.996)   # after the optimizer step
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import Tensor, nn

from locallearn.nn.teacher import ema_update, freeze


class DINOOptions(BaseModel):
    """`method.dino.*`: DINO's prototypes, temperatures, momenta and multi-crop."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    prototypes: int = Field(1024, gt=0, description="number of prototypes: the width of the unit-norm last layer of the DINO head")
    student_temperature: float = Field(0.1, gt=0, description="temperature of the student's softmax over prototypes")
    teacher_temperature: float = Field(0.04, gt=0, description="temperature of the teacher's softmax (lower than the student's: sharpening)")
    centre_momentum: float = Field(0.9, ge=0, lt=1, description="momentum of the running centre subtracted from the teacher's scores")
    teacher_momentum: float = Field(0.996, ge=0, le=1, description="EMA momentum of the teacher at the first step, raised to 1 on a cosine schedule")
    local_crops: int = Field(0, ge=0, description="small crops per image besides the two large ones (multi-crop; 0 = off); student views only")
    local_size: int = Field(12, gt=0, description="side in pixels of the small crops")
    local_scale: list[float] = Field(default_factory=lambda: [0.1, 0.3], min_length=2, max_length=2, description="least and largest area fraction of the image a small crop covers")

    @field_validator("local_scale")
    @classmethod
    def _ordered_fractions(cls, scale: list[float]) -> list[float]:
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError("must be two area fractions with 0 < least <= largest <= 1")
        return scale


def dino_terms(student: Tensor, teacher: Tensor, centre: Tensor, student_temperature: float, teacher_temperature: float) -> tuple[Tensor, Tensor]:
    """DINO's loss and the teacher's mean entropy, from scores of shape (views, N, K).

    `teacher` holds the scores of the first `teacher.shape[0]` views (the large crops),
    `student` those of all views, the same crops first. The teacher's distribution is
    `softmax((teacher - centre) / teacher_temperature)` (no gradient); the loss is the mean
    over image and over every (teacher view i, student view j != i) pair of
    `-sum_k p_teacher[i, k] * log p_student[j, k]`.
    """
    p = F.softmax((teacher.detach().float() - centre) / teacher_temperature, dim=-1)
    log_q = F.log_softmax(student.float() / student_temperature, dim=-1)
    cross = -torch.einsum("ink,jnk->ij", p, log_q) / student.shape[1]  # (teacher views, student views)
    other = ~torch.eye(*cross.shape, dtype=torch.bool, device=cross.device)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(-1).mean()
    return cross[other].mean(), entropy


class DINOLoss(nn.Module):
    """DINO's centred, sharpened cross-entropy, with the running centre as a buffer.

    `forward` only reads the centre and remembers the batch's mean teacher score;
    `update_centre` (called after the optimizer step) moves the centre towards it.

    Example:
        >>> loss_fn = DINOLoss(prototypes=1024)
        >>> loss, metrics = loss_fn(student_scores, teacher_scores)   # (views, N, K), (2, N, K)
        >>> loss_fn.update_centre()
    """

    def __init__(self, prototypes: int, student_temperature: float = 0.1, teacher_temperature: float = 0.04, centre_momentum: float = 0.9):
        super().__init__()
        self.student_temperature = student_temperature
        self.teacher_temperature = teacher_temperature
        self.centre_momentum = centre_momentum
        self.register_buffer("centre", torch.zeros(prototypes))
        self.batch_centre: Tensor | None = None

    def forward(self, student: Tensor, teacher: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        loss, entropy = dino_terms(student, teacher, self.centre, self.student_temperature, self.teacher_temperature)
        self.batch_centre = teacher.detach().float().mean(dim=(0, 1))
        return loss, {"teacher_entropy": entropy.detach()}

    @torch.no_grad()
    def update_centre(self) -> None:
        """centre <- m * centre + (1 - m) * the last batch's mean teacher score (averaged over data-parallel ranks)."""
        if self.batch_centre is None:
            return
        batch = self.batch_centre
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(batch)
            batch = batch / torch.distributed.get_world_size()
        self.centre.mul_(self.centre_momentum).add_(batch, alpha=1 - self.centre_momentum)
        self.batch_centre = None


class DINOObjective(nn.Module):
    """A block's DINO objective: the student `head`, the `loss`, and (after `bind`) the teacher.

    The block's output holds the two large crops of `views.num_positive` images each; small
    crops, if any, are `views.local` (the block's input for them) and the student layers run
    on them here, handing their detached output on to the next block in `views.local`.
    """

    needs_input = True  # the block passes its input: the teacher's layers read it

    def __init__(self, head: nn.Module, loss: DINOLoss):
        super().__init__()
        self.head = head
        self.loss = loss

    def bind(self, layers: nn.Sequential) -> None:
        """Build the teacher: frozen copies of the block's layers and of the student head."""
        self.teacher = freeze(nn.ModuleDict({"layers": copy.deepcopy(layers), "head": copy.deepcopy(self.head)}))
        self.student_layers = (layers,)  # a reference, not a submodule: the block owns the layers

    def forward(self, out: Tensor, views, inputs: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        n = views.num_positive
        student = self.head(out).view(2, n, -1)
        local = getattr(views, "local", None)
        if local is not None:
            local_out = self.student_layers[0](local)
            student = torch.cat([student, self.head(local_out).view(-1, n, student.shape[-1])])
            views.local = local_out.detach()  # the small crops' cut, as the engine's for the large ones
        with torch.no_grad():
            teacher = self.teacher["head"](self.teacher["layers"](inputs)).view(2, n, -1)
        loss, metrics = self.loss(student, teacher)
        return loss, {"loss": loss.detach(), **metrics}

    @torch.no_grad()
    def update(self, layers: nn.Module, momentum: float) -> None:
        """After the optimizer step: the teacher moves towards the student (`momentum`), the centre towards the batch."""
        ema_update(self.teacher["layers"], layers, momentum)
        ema_update(self.teacher["head"], self.head, momentum)
        self.loss.update_centre()
