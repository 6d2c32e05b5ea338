"""Networks cut finer: ResNets as residual units (block:K with K = stages gives the stages), ResNet-32,
the 8-convolution VGG at every K, deeper local heads and InfoPro's reconstruction term, all local."""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import gradient_leaks, prototype_splits
from locallearn.config import ModelConfig, load_config
from locallearn.engine import Trainer
from locallearn.errors import UsageError
from locallearn.nn.backbones import BUILDERS, build_backbone
from locallearn.nn.heads import PoolProjector
from locallearn.nn.network import group_layers
from locallearn.nn.resnet import RESNETS, stem
from locallearn.objectives.classification import LocalClassifierLoss
from locallearn.objectives.reconstruction import InformationPreserving

pytestmark = pytest.mark.usefixtures("one_thread")

DEEP_VGG = ["model.channels=[4,4,8,8,8,8,8,8]"]  # greedy-supervised-deep's 8 convolutions and pools, narrow


@pytest.fixture(scope="module")
def data():
    return prototype_splits(n_train=32, n_test=16, size=12)


def config(preset: str, *overrides: str):
    small = ["data.batch_size=16", "train.epochs=1", "logging.progress=false", "eval.probe_epochs=1"]
    if load_config(preset).method.name == "blockwise-ssl":
        small.append("method.projector=[16,16]")
    return load_config(preset, [*small, *overrides])


def first_views(trainer):
    x, y, index = next(iter(trainer.batcher.batches(0)))
    return trainer.method.make_views(x, y, index, torch.Generator().manual_seed(0))


def four_stages(name: str, in_channels: int, width: int) -> list[nn.Sequential]:
    """The ResNet as Siddiqui et al.'s four stage-blocks, built straight from its parts (the stem inside stage 1)."""
    unit, expansion, depths, _ = RESNETS[name]
    stages, modules, channels = [], stem(in_channels, width, imagenet=False), width
    for i, depth in enumerate(depths):
        for j in range(depth):
            modules.append(unit(channels, width * 2**i, 2 if i and j == 0 else 1))
            channels = width * 2**i * expansion
        stages.append(nn.Sequential(*modules))
        modules = []
    return stages


@pytest.mark.parametrize("arch, width", [("resnet18", 4), ("resnet50", 1)])
def test_block4_of_a_resnet_is_its_four_stages_with_the_same_parameters(data, arch, width):
    trainer = Trainer(config("greedy-supervised", f"model.arch={arch}", f"model.width={width}", "train.granularity=block:4", "train.seed=3"), data)
    torch.manual_seed(3)
    reference = four_stages(arch, 1, width)
    x = torch.randn(4, 1, 12, 12)
    for block, stage in zip(trainer.net.blocks, reference, strict=True):
        mine, theirs = list(block.layers.state_dict().values()), list(stage.state_dict().values())
        assert len(mine) == len(theirs) and all(torch.equal(a, b) for a, b in zip(mine, theirs))
        block.eval()
        stage.eval()
        with torch.no_grad():
            out, expected = block(x), stage(x)
        assert torch.equal(out, expected)
        x = out


def test_resnet32_is_the_cifar_net_of_16_layers():
    layers = build_backbone(ModelConfig(arch="resnet32"), (3, 32, 32))
    assert len(layers) == 16 and [layer.out_features for layer in layers] == [16] * 6 + [32] * 5 + [64] * 5
    assert [type(layer[0].shortcut).__name__ for layer in layers[1:]].count("Sequential") == 2  # projection shortcuts where the stride is 2
    x = torch.randn(2, 3, 32, 32)
    for layer in layers:
        x = layer(x)
    assert tuple(x.shape) == (2, 64, 8, 8)
    # by hand: stem 464 + stage 1 23,360 + stage 2 88,768 + stage 3 353,664 (He et al.'s 0.46M, with 1x1 projections)
    assert sum(p.numel() for layer in layers for p in layer.parameters()) == 466_256


@pytest.mark.parametrize(
    "arch, granularity, sizes",
    [
        ("resnet32", "block:16", [1] * 16),  # K = layers: the stem alone, as DGL/InfoPro's K = 16
        ("resnet32", "layer", [1] * 16),
        ("resnet32", "block:8", [3, 2, 2, 2, 1, 2, 2, 2]),  # 15 units in 8 (rounded), the stem with the first
        ("resnet32", "block:3", [6, 5, 5]),  # the three stages
        ("resnet32", "block:2", [9, 7]),
        ("resnet18", "block:8", [2, 1, 1, 1, 1, 1, 1, 1]),  # the 8 residual units, the stem with the first
        ("resnet18", "block:4", [3, 2, 2, 2]),
        ("resnet50", "block:16", [2] + [1] * 15),
        ("resnet50", "block:8", [3, 2, 2, 2, 2, 2, 2, 2]),
        ("resnet50", "block:4", [4, 4, 6, 3]),  # the stages, not 4 even shares
        ("resnet50", "layer", [1] * 17),
    ],
)
def test_resnets_group_by_units_the_stem_with_the_first_and_by_stages_at_k_stages(arch, granularity, sizes):
    layers = build_backbone(ModelConfig(arch=arch, width=4), (1, 12, 12))
    groups = group_layers(layers, granularity)
    assert [len(group) for group in groups] == sizes
    assert [layer for group in groups for layer in group] == layers


def test_more_blocks_than_layers_is_a_usage_error():
    with pytest.raises(UsageError, match="block:18 asks for more blocks than the 17 layers"):
        group_layers(build_backbone(ModelConfig(arch="resnet50", width=4), (1, 12, 12)), "block:18")


def test_the_config_lists_exactly_the_registered_architectures():
    assert ModelConfig.model_json_schema()["properties"]["arch"]["enum"] == list(BUILDERS)
    with pytest.raises(UsageError, match="model.arch.*'resnet32'"):
        load_config("greedy-supervised", ["model.arch=resnet34"])


@pytest.mark.parametrize("preset", ["greedy-supervised-deep", "blockwise-barlow"])
@pytest.mark.parametrize("granularity, sizes", [("block:1", [8]), ("block:2", [4, 4]), ("block:4", [2, 2, 2, 2]), ("block:8", [1] * 8), ("layer", [1] * 8)])
def test_the_deep_vgg_cuts_into_any_k_and_stays_local(data, preset, granularity, sizes):
    vgg = [*DEEP_VGG, "model.pool=[1,1,2,1,2,1,1,1]"] if preset == "blockwise-barlow" else DEEP_VGG
    trainer = Trainer(config(preset, *vgg, f"train.granularity={granularity}"), data)
    assert [len(block.layers) for block in trainer.net.blocks] == sizes
    assert gradient_leaks(trainer, first_views(trainer)) == []


@pytest.mark.parametrize(
    "preset, overrides",
    [
        ("greedy-supervised-deep", [*DEEP_VGG, "train.granularity=block:8", "method.head_convs=2"]),
        ("greedy-supervised-deep", [*DEEP_VGG, "train.granularity=block:4", "method.recon_weight=1.0"]),
        ("greedy-supervised-deep", [*DEEP_VGG, "train.granularity=block:8", "method.head_convs=1", "method.recon_weight=0.5"]),
        ("greedy-supervised", ["model.arch=resnet32", "model.width=8", "train.granularity=layer", "method.head_convs=1", "method.recon_weight=1.0"]),
        ("blockwise-vicreg", ["model.channels=[4,8,8]", "model.pool=[1,2,1]", "train.granularity=layer", "method.head_convs=2", "method.recon_weight=1.0"]),
        ("blockwise-simclr", ["model.arch=resnet18", "model.width=4", "train.granularity=block:8", "method.head_convs=1", "method.recon_weight=1.0"]),
    ],
)
def test_deeper_heads_and_the_reconstruction_term_stay_local(data, preset, overrides):
    trainer = Trainer(config(preset, *overrides), data)
    assert gradient_leaks(trainer, first_views(trainer)) == []


def test_head_convs_put_that_many_convolutions_before_the_pool():
    head = LocalClassifierLoss(8, 10, pool=2, hidden=[16], convs=2).eval()
    assert sum(isinstance(m, nn.Conv2d) for m in head.modules()) == 2
    x = torch.randn(4, 8, 6, 6)
    expected = head.head(F.adaptive_avg_pool2d(head.convs(x), 2).flatten(1))
    assert torch.equal(head.score(x), expected)
    assert not any(isinstance(m, nn.Conv2d) for m in LocalClassifierLoss(8, 10, convs=0).modules())
    projector = PoolProjector(8, expand=16, widths=[12], convs=3).eval()  # block-wise SSL's head: the convs come before the 1x1 expansion
    assert sum(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in projector.modules()) == 3
    assert torch.equal(projector(x), projector.projector(projector.expand(projector.convs(x)).mean(dim=(2, 3))))


def test_the_reconstruction_term_is_the_objective_plus_weight_times_the_decoders_error(data):
    trainer = Trainer(config("greedy-supervised-deep", *DEEP_VGG, "train.granularity=block:2", "method.recon_weight=0.5"), data)
    views = first_views(trainer)
    block = trainer.net.blocks[1]
    assert isinstance(block.objective, InformationPreserving)
    out = block(trainer.net.blocks[0](views.inputs))
    loss, metrics = block.objective(out, views)
    classifier_loss, _ = block.objective.objective(out, views)
    decoded = block.objective.decoder(out, views.inputs.shape[-2:])
    assert decoded.shape == views.inputs.shape
    recon = F.mse_loss(decoded, views.inputs)
    torch.testing.assert_close(loss, classifier_loss + 0.5 * recon)
    torch.testing.assert_close(metrics["recon_loss"], recon)
    torch.testing.assert_close(block.objective.score(out), block.objective.objective.score(out))
    plain = Trainer(config("greedy-supervised-deep", *DEEP_VGG, "train.granularity=block:2"), data)
    assert isinstance(plain.net.blocks[1].objective, LocalClassifierLoss)  # weight 0: no decoder at all


def test_the_reconstruction_gradient_trains_the_block_itself(data):
    """Same weights, same views: the block's own layers get a different gradient once the term is on."""
    grads = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        trainer = Trainer(config("greedy-supervised-deep", *DEEP_VGG, "train.granularity=block:2", f"method.recon_weight={weight}"), data)
        block, views = trainer.net.blocks[1], first_views(trainer)
        h = trainer.net.blocks[0](views.inputs).detach()
        block(h, views)[1].backward()
        grads[weight] = [p.grad.clone() for p in block.layers.parameters()]
    assert not all(torch.allclose(a, b) for a, b in zip(grads[0.0], grads[1.0]))


def test_a_block_with_the_reconstruction_term_learns_to_rebuild_its_input():
    """A 2-layer VGG on prototypes: the last layer's reconstruction of a batch falls to well under half its error at the start."""
    torch.manual_seed(0)
    images = prototype_splits(n_train=400, n_test=50, size=12, noise=0.3)
    run = config("greedy-supervised-deep", "model.channels=[8,8]", "model.pool=[1,2]", "train.granularity=layer", "method.recon_weight=1.0",
                 "data.batch_size=50", "optim.lr=0.01", "train.epochs=4", "method.augment=null")
    trainer = Trainer(run, images)
    views = first_views(trainer)

    def error() -> float:
        trainer.net.eval()
        out = trainer.net.forward_blocks(views.inputs)[-1]
        with torch.no_grad():
            return trainer.net.blocks[-1].objective(out, views)[1]["recon_loss"].item()

    before = error()
    for _ in range(run.train.epochs):
        trainer.train_epoch()
    assert error() < 0.4 * before  # seeds 0-2: 1.06-1.11 before, 0.22-0.27 after


def test_bad_option_values_are_usage_errors():
    with pytest.raises(UsageError, match="method.head_convs"):
        load_config("greedy-supervised-deep", ["method.head_convs=-1"])
    with pytest.raises(UsageError, match="method.recon_weight"):
        load_config("blockwise-barlow", ["method.recon_weight=-0.1"])


def test_the_reconstruction_term_on_flat_outputs_is_a_usage_error(data):
    trainer = Trainer(config("backprop-mlp", "model.hidden=[16,16]", "method.recon_weight=1.0", "train.granularity=layer"), data)
    with pytest.raises(UsageError, match="method.recon_weight needs blocks with image outputs"):
        trainer.train_epoch()
