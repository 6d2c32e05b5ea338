"""Teachers that follow a student: freezing a module, the exponential-moving-average update, its momentum schedule.

An objective that needs a teacher (DINO, BYOL) makes it in its `bind` (`freeze(copy.deepcopy(layers))`),
and its method moves it after every step (`Method.after_step`). Each utility is tested alone.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def freeze(module: nn.Module) -> nn.Module:
    """`module` with every parameter's requires_grad off (so no optimizer gets it); returned for chaining."""
    for param in module.parameters():
        param.requires_grad_(False)
    return module


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """Move each teacher parameter towards its student's: t <- momentum * t + (1 - momentum) * s.

    Parameters are paired in `parameters()` order (the teacher is a copy of the student);
    buffers such as BatchNorm statistics are left to the teacher's own forward passes.
    """
    teacher_params, student_params = list(teacher.parameters()), list(student.parameters())
    if len(teacher_params) != len(student_params):
        raise ValueError(f"the teacher has {len(teacher_params)} parameters and the student {len(student_params)}; the teacher must be a copy of the student")
    for t, s in zip(teacher_params, student_params):
        t.lerp_(s.detach(), 1.0 - momentum)


def momentum_schedule(base: float, step: int, total_steps: int) -> float:
    """The teacher's momentum at `step`: from `base` at step 0 to 1 at `total_steps` on a half cosine (BYOL, DINO)."""
    progress = min(step / max(total_steps, 1), 1.0)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0
