"""Several processes (torchrun) or devices: data-parallel blocks and layer-parallel pipelines.

`init_distributed` joins the process group that `torchrun` describes in the environment;
`links` holds how a trainer gets each step's views and what it does after a step in
each mode (one process, data parallel, pipeline stage).
"""

from locallearn.distributed.context import DistContext, init_distributed, pick_device

__all__ = ["DistContext", "init_distributed", "pick_device"]
