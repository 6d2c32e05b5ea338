"""Forward-Forward variants that were measured and not adopted, runnable for anyone who wants to check.

Each variant patches the library in this process only, then runs the usual command line:

    python benchmarks/ff_variants.py VARIANT train PRESET [KEY=VALUE ...] --out DIR

- `cumulative-goodness`: each layer's loss is the paper's logistic loss on the goodness summed over
  itself and the layers below it (theirs detached, so every gradient stays local), against the sum
  of their thresholds. Training then matches the classifier, which sums the layers' goodness; each
  layer only has to mend what the layers below still get wrong. For `ff-supervised`; the loss is
  always the softplus one, without peer normalisation (`method.loss` and `method.peer_weight` are ignored).
- `scff-concat`: self-contrastive pairs as Chen et al. feed them, the two images concatenated along
  the channels (`[a; b]`: the first layer holds a weight set for each), where the library averages
  them (`views.pairs`: one shared weight set). Positives are `[x; x]`, negatives `[x; x']`, and the
  readout reads the network on `[x; x]`. For `ff-unsupervised` with `method.negatives=self-contrastive`.
- `label-every-layer`: every layer after the first also sees the label directly: the label pixels of
  the network's input, read back as a one-hot (0 unlit, 1 lit), times 6 (the order of the lit label
  pixel in layer 1's RMS-normalised input: a median of 7.7 on Fashion-MNIST), appended to its
  normalised input. Layer 1 is unchanged.
  For `ff-supervised` on `model.arch=mlp`, in one process.
- `input-every-layer`: every layer after the first also reads the network's input (the image with its
  label), RMS-normalised as layer 1 reads it, appended to its own normalised input: the deeper layers
  see the image itself, not only layer 1's pattern of activity. Layer 1 is unchanged.
  For `ff-supervised` on `model.arch=mlp`, in one process.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from locallearn import engine
from locallearn.cli import main
from locallearn.errors import UsageError
from locallearn.methods.ff_common import probe_features
from locallearn.methods.ff_supervised import FFSupervised
from locallearn.methods.ff_unsupervised import FFUnsupervised
from locallearn.nn import backbones
from locallearn.objectives import goodness
from locallearn.views.base import Views
from locallearn.views.hybrid import partner_indices


def cumulative_goodness_loss(self, out: torch.Tensor, views: Views):
    """The FF loss on this layer's goodness plus the (detached) goodness of the layers before it in this step."""
    g = goodness.grouped_goodness(out, self.goodness_kind, self.over, self.groups)
    below, below_threshold = getattr(views, "goodness_below", 0.0), getattr(views, "threshold_below", 0.0)
    total, threshold = g + below, below_threshold + self.default_threshold(out, g)
    loss = goodness.softplus_loss(total[: views.num_positive], total[views.num_positive :], threshold)
    views.goodness_below, views.threshold_below = total.detach(), threshold
    n = views.num_positive
    return loss, {"loss": loss.detach(), "ff_loss": loss.detach(), "g_pos": g[:n].detach().mean(), "g_neg": g[n:].detach().mean()}


def use_cumulative_goodness() -> None:
    goodness.FFGoodnessLoss.forward = cumulative_goodness_loss


def refuse_configs(accepts, message: str) -> None:
    """Make building a trainer a one-line `UsageError` (`message`) for any config that `accepts` rejects."""
    trainer_init = engine.Trainer.__init__

    def checked_init(self, config, *args, **kwargs):
        if not accepts(config):
            raise UsageError(message)
        trainer_init(self, config, *args, **kwargs)

    engine.Trainer.__init__ = checked_init


def use_concatenated_pairs() -> None:
    build_backbone = engine.build_backbone

    def twice_the_channels(model, input_shape):
        return build_backbone(model, (2 * input_shape[0], *input_shape[1:]))

    def make_views(self, x, y, index, generator):
        partners = partner_indices(x.shape[0], generator).to(x.device)
        return Views(inputs=torch.cat([torch.cat([x, x], 1), torch.cat([x, x[partners]], 1)]), num_positive=x.shape[0])

    def features(self, net, x):
        return probe_features(net.forward_blocks(torch.cat([x, x], 1)), self.options.probe_pool)

    refuse_configs(lambda config: config.method.name == "ff-unsupervised" and config.method.negatives == "self-contrastive",
                   "scff-concat pairs images: run it on ff-selfcontrastive (method.name=ff-unsupervised, method.negatives=self-contrastive)")
    engine.build_backbone = twice_the_channels
    FFUnsupervised.make_views = make_views
    FFUnsupervised.features = features


LABEL_VALUE = 6.0  # the order of the lit label pixel (3x white) in layer 1's RMS-normalised input


class Keep(nn.Module):
    """Passes its input through and keeps `read(input)` in `shared[key]` for the later layers."""

    def __init__(self, shared: dict, key: str, read=lambda x: x):
        super().__init__()
        self.shared, self.key, self.read = shared, key, read

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shared[self.key] = self.read(x)
        return x


class Append(nn.Module):
    """Appends what a `Keep` kept in `shared[key]` to a later layer's normalised input."""

    def __init__(self, shared: dict, key: str):
        super().__init__()
        self.shared, self.key = shared, key

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.cat([h, self.shared[self.key]], 1)


def linear_at(modules: list) -> int:
    return next(i for i, m in enumerate(modules) if isinstance(m, nn.Linear))


def feed_later_layers(layers: list, keep: Keep, keep_at_linear: bool, append: Append, extra_inputs: int) -> list:
    """Puts `keep` into layer 1 (first, or just before its `nn.Linear`) and `append` before every later layer's
    `nn.Linear`, widened by `extra_inputs`, so that the later layers also read what layer 1 kept."""
    for k, layer in enumerate(layers):
        modules = list(layer)
        at = linear_at(modules)
        if k == 0:
            modules.insert(at if keep_at_linear else 0, keep)
        else:
            modules[at : at + 1] = [append, nn.Linear(modules[at].in_features + extra_inputs, modules[at].out_features)]
        layers[k] = nn.Sequential(*modules)
        layers[k].out_features = layer.out_features
    return layers


def use_label_every_layer() -> None:
    shared: dict = {}
    method_init, mlp_layers = FFSupervised.__init__, backbones.BUILDERS["mlp"]

    def remember_the_label_range(self, options, data):
        method_init(self, options, data)
        shared["label_range"], shared["num_classes"] = self._label_range(), data.num_classes

    def label_read_back(x: torch.Tensor) -> torch.Tensor:
        """The label pixels of layer 1's input, read back as 0 (unlit) to 1 (lit), times `LABEL_VALUE`."""
        low, lit = shared["label_range"]
        return LABEL_VALUE * ((x.flatten(1)[:, : shared["num_classes"]] - low) / (lit - low))

    def labelled_layers(model, input_shape):
        return feed_later_layers(mlp_layers(model, input_shape), Keep(shared, "label", label_read_back), False,
                                 Append(shared, "label"), shared["num_classes"])

    refuse_configs(lambda config: config.method.name == "ff-supervised" and config.model.arch == "mlp",
                   "label-every-layer writes the label into dense layers: run it on ff-supervised with model.arch=mlp")
    FFSupervised.__init__ = remember_the_label_range
    backbones.BUILDERS["mlp"] = labelled_layers


def use_input_every_layer() -> None:
    shared: dict = {}
    mlp_layers = backbones.BUILDERS["mlp"]

    def layers_reading_the_input(model, input_shape):
        layers = mlp_layers(model, input_shape)
        first = list(layers[0])
        return feed_later_layers(layers, Keep(shared, "input"), True, Append(shared, "input"), first[linear_at(first)].in_features)

    refuse_configs(lambda config: config.method.name == "ff-supervised" and config.model.arch == "mlp",
                   "input-every-layer feeds the image to dense layers: run it on ff-supervised with model.arch=mlp")
    backbones.BUILDERS["mlp"] = layers_reading_the_input


VARIANTS = {"cumulative-goodness": use_cumulative_goodness, "scff-concat": use_concatenated_pairs, "label-every-layer": use_label_every_layer,
            "input-every-layer": use_input_every_layer}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in VARIANTS:
        raise SystemExit(f"usage: python benchmarks/ff_variants.py VARIANT train PRESET [KEY=VALUE ...]; VARIANT is one of {', '.join(VARIANTS)}")
    VARIANTS[sys.argv[1]]()
    sys.exit(main(sys.argv[2:]))
