"""Unsupervised FF (hybrid and self-contrastive negatives), channel-wise FF, and FF on image layers: learning, locality, presets."""

from __future__ import annotations

import pytest
import torch

from helpers import gradient_leaks, grating_splits, prototype_splits, tiny_config, tiny_splits
from locallearn.config import load_config
from locallearn.engine import Trainer, train_step
from locallearn.evaluate import classify, linear_probes

LOCAL = ["model.arch=locally-connected", "model.channels=[4,8,8]", "model.kernel_size=[6,2,2]", "model.stride=[2,1,1]", "model.padding=0"]
CONV = ["model.arch=conv", "model.channels=[10,20,20]", "model.pool=[1,2,2]"]


def unsupervised_config(*overrides: str):
    return load_config(
        "ff-unsupervised-small",
        ["model.hidden=[32,32,32]", "train.epochs=5", "data.batch_size=50", "optim.lr=0.01", "optim.schedule=constant", "logging.progress=false", *overrides],
    )


def readout_accuracy(trainer, data) -> float:
    blocks = trainer.method.readout_blocks(len(trainer.net.blocks))
    return linear_probes(trainer.method, trainer.net, data, blocks, epochs=20, lr=0.01, seed=0, batch_size=500)["readout"]["test"]


@pytest.mark.parametrize("overrides", [[], ["method.negatives=self-contrastive"], LOCAL], ids=["hybrid", "self-contrastive", "locally-connected"])
def test_unsupervised_ff_readout_beats_random_layers(overrides):
    """On noisy class prototypes, layers trained without labels keep the class that random layers lose in the noise."""
    data = prototype_splits()
    config = unsupervised_config(*overrides)
    untrained = Trainer(config, data)
    trained = Trainer(config, data)
    for _ in range(config.train.epochs):
        trained.train_epoch()
    before, after = readout_accuracy(untrained, data), readout_accuracy(trained, data)
    assert after > 0.9 and after > before + 0.15, (before, after)


def test_positives_are_the_images_and_negatives_their_hybrids():
    data = prototype_splits(n_train=100)
    trainer = Trainer(unsupervised_config("method.other_class=true"), data)
    x, y, index = next(iter(trainer.batcher.batches(0)))
    views = trainer.method.make_views(x, y, index, torch.Generator().manual_seed(0))
    assert views.num_positive == x.shape[0] and views.inputs.shape[0] == 2 * x.shape[0] and views.labels is None
    assert torch.equal(views.inputs[: x.shape[0]], x)
    negatives = views.inputs[x.shape[0] :]
    sources = (negatives.unsqueeze(1) == x.unsqueeze(0)).flatten(2).any(dim=2)  # which images each hybrid draws from
    assert (sources.sum(dim=1) == 2).all()
    partner = sources.float().masked_fill(torch.eye(x.shape[0], dtype=torch.bool), 0).argmax(dim=1)
    assert (y[partner] != y).all()


def test_the_readout_reads_the_last_three_blocks_and_there_is_no_other_classifier(tmp_path):
    data = tiny_splits(tmp_path)
    trainer = Trainer(tiny_config("ff-unsupervised-small", tmp_path, "model.hidden=[16,16,16,16]"), data)
    assert trainer.method.primary == "readout"
    assert trainer.method.readout_blocks(4) == [1, 2, 3] and trainer.method.readout_blocks(2) == [0, 1]
    assert classify(trainer.method, trainer.net, data.val_x, data.val_y, 200) == {}
    features = trainer.method.features(trainer.net, data.val_x[:5])
    assert [f.shape for f in features] == [(5, 16)] * 4
    torch.testing.assert_close(features[0].square().mean(dim=1), torch.ones(5))


def test_probe_features_of_image_layers_are_pooled(tmp_path):
    data = tiny_splits(tmp_path)
    trainer = Trainer(tiny_config("ff-unsupervised-small", tmp_path, *CONV, "method.probe_pool=3"), data)
    assert [f.shape for f in trainer.method.features(trainer.net, data.val_x[:4])] == [(4, 90), (4, 180), (4, 180)]


@pytest.mark.parametrize(
    "preset, overrides",
    [
        ("ff-unsupervised-small", []),
        ("ff-unsupervised-small", LOCAL),
        ("ff-unsupervised-small", CONV + ["method.goodness_over=position", "model.norm_over=position", "method.peer_weight=0.03"]),
        ("ff-unsupervised-small", CONV + ["method.negatives=self-contrastive", "method.goodness_groups=5"]),
        ("ff-supervised-small", CONV),
        ("ff-supervised-small", LOCAL + ["method.peer_weight=0.03"]),
        ("ff-conv", CONV),
        ("backprop-mlp", CONV + ["train.granularity=layer"]),
    ],
)
def test_no_loss_reaches_a_parameter_outside_its_block(tmp_path, preset, overrides):
    data = tiny_splits(tmp_path)
    trainer = Trainer(tiny_config(preset, tmp_path, *overrides), data)
    x, y, index = next(iter(trainer.batcher.batches(0)))
    views = trainer.method.make_views(x, y, index, torch.Generator().manual_seed(0))
    assert len(trainer.net.blocks) == 3
    assert gradient_leaks(trainer, views) == []


def test_the_locality_check_sees_a_leak_through_image_layers(tmp_path):
    data = tiny_splits(tmp_path)
    trainer = Trainer(tiny_config("ff-unsupervised-small", tmp_path, *LOCAL), data)
    x, y, index = next(iter(trainer.batcher.batches(0)))
    views = trainer.method.make_views(x, y, index, torch.Generator().manual_seed(0))
    first, second = trainer.net.blocks[0], trainer.net.blocks[1]
    layers = second.layers.forward
    second.layers.forward = lambda h: layers(first(views.inputs))  # block 2 recomputes block 1 without the cut
    assert (0, 1) in gradient_leaks(trainer, views)


def test_training_is_reproducible_from_the_seed(tmp_path):
    data = tiny_splits(tmp_path)
    config = tiny_config("ff-unsupervised-small", tmp_path, *LOCAL)
    first, second = Trainer(config, data), Trainer(config, data)
    first.train_epoch()
    second.train_epoch()
    for a, b in zip(first.net.state_dict().values(), second.net.state_dict().values()):
        assert torch.equal(a, b)


def test_channelwise_conv_ff_learns_textures():
    """Each class owns a channel group; a few epochs on oriented gratings take the summed goodness far above chance."""
    data = grating_splits(noise=0.5)
    # no flips: mirroring a grating changes its orientation, which is its class
    config = load_config("ff-conv", [*CONV, "train.epochs=5", "data.batch_size=50", "method.augment=null", "logging.progress=false"])
    trainer = Trainer(config, data)
    before = classify(trainer.method, trainer.net, data.test_x, data.test_y, 500)
    for _ in range(config.train.epochs):
        trainer.train_epoch()
    after = classify(trainer.method, trainer.net, data.test_x, data.test_y, 500)
    assert after["goodness"] > 0.8 and after["goodness"] > before["goodness"] + 0.5, (before, after)


def test_supervised_ff_trains_image_layers(tmp_path):
    data = tiny_splits(tmp_path)
    trainer = Trainer(tiny_config("ff-supervised-small", tmp_path, *CONV, "method.goodness_over=position", "model.norm_over=position"), data)
    record = trainer.train_epoch()
    assert all(0 < block["loss"] < 10 for block in record["blocks"].values())
    scores = trainer.method.predict(trainer.net, data.val_x[:7])
    assert scores["goodness"].shape == (7, 10)


@pytest.mark.parametrize("preset", ["ff-unsupervised", "ff-unsupervised-hinton", "ff-unsupervised-local", "ff-selfcontrastive", "ff-conv", "ff-unsupervised-small"])
def test_presets_build_and_take_a_step(tmp_path, preset):
    data = tiny_splits(tmp_path)
    config = load_config(preset, ["data.name=mnist", f"data.dir={tmp_path}", "data.download=false", "data.batch_size=20"])
    trainer = Trainer(config, data)
    x, y, index = next(iter(trainer.batcher.batches(0)))
    metrics, _ = train_step(trainer.net.blocks, trainer.optimizers, trainer.method.make_views(x, y, index, torch.Generator().manual_seed(0)))
    assert len(metrics) == len(trainer.net.blocks) and all(torch.isfinite(m["loss"]) for m in metrics)


def test_the_unsupervised_preset_is_hintons_recipe_changed_only_where_the_readme_says():
    ours, hinton = load_config("ff-unsupervised").to_dict(), load_config("ff-unsupervised-hinton").to_dict()
    changed = {("model", "out_norm"): "batch", ("method", "readout_last"): 4, ("train", "epochs"): 10,
               ("optim", "block_lr_scale"): [1, 0.05], ("eval", "probe_schedule"): "cosine", ("eval", "probe_epochs"): 30}
    for (section, key), value in changed.items():
        assert ours[section].pop(key) == value and hinton[section].pop(key) != value, key
    for tree in (ours, hinton):
        tree.pop("description"), tree.pop("summary")
    assert ours == hinton
