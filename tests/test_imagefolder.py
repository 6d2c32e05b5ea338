"""`data.name=imagefolder`: listing and splitting a folder of image files, training batches decoded by
DataLoader workers (order, resume, ranks, workers), streamed evaluation, one-line errors, and a whole run."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from locallearn.cli import main
from locallearn.data import load_dataset, train_batches
from locallearn.data.batcher import Batcher
from locallearn.data.imagefolder import CROP_RATIO, CROP_SCALE, IMAGENET_MEAN, IMAGENET_STD, random_resized_box
from locallearn.errors import DataError, LocalLearnError, UsageError

Image = pytest.importorskip("PIL.Image")

SIZE = 16
SHAPES = [(40, 30), (30, 40), (64, 48), (17, 50), (50, 17), (33, 33)]  # (width, height)


def write_tree(root: Path, classes: int = 3, train: int = 6, val: int = 2) -> Path:
    """`root/train/classK/` and `root/val/classK/`: JPEG colour and PNG grayscale images of odd sizes."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train), ("val", val)):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                w, h = SHAPES[i % len(SHAPES)]
                if i % 3 == 1:
                    Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L").save(folder / f"img{i}.png")
                else:
                    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB").save(folder / f"img{i}.JPEG", quality=90)
    return root


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return write_tree(tmp_path_factory.mktemp("imagefolder"))


def load(root: Path, workers: int = 0, **kwargs):
    return load_dataset("imagefolder", root, val_size=kwargs.pop("val_size", 4), image_size=SIZE, workers=workers, **kwargs)


def epoch(data, batch_size=3, seed=0, rank=0, world=1, n=0, first=0) -> list[tuple[torch.Tensor, ...]]:
    return list(train_batches(data, batch_size, seed, rank, world).batches(n, first))


def assert_same(a: list[tuple], b: list[tuple]) -> None:
    assert len(a) == len(b)
    for one, other in zip(a, b):
        for t, u in zip(one, other):
            assert torch.equal(t, u)


def test_splits_classes_and_shapes(tree):
    data = load(tree)
    assert data.classes == ["class0", "class1", "class2"] and data.num_classes == 3
    assert data.image_shape == (3, SIZE, SIZE) and data.train_x is None
    assert (data.split_size("train"), data.split_size("val"), data.split_size("test")) == (14, 4, 6)
    held_out = set(data.paths["val"].tolist())
    assert held_out.isdisjoint(data.paths["train"].tolist()) and len(held_out) == 4
    assert all(p.startswith(b"val/") for p in data.paths["test"].tolist())
    # the hold-out is fixed (no seed involved); smaller train subsets are nested in larger ones
    assert load(tree).paths["val"].tolist() == data.paths["val"].tolist()
    small, larger = load(tree, train_subset=5), load(tree, train_subset=9)
    assert set(small.paths["train"].tolist()) <= set(larger.paths["train"].tolist()) <= set(data.paths["train"].tolist())
    assert load(tree, val_size=5000).split_size("val") == 9  # capped at half of the training files
    assert torch.equal(data.labels("test"), torch.tensor([0, 0, 1, 1, 2, 2]))


def test_training_batches_are_normalised_uint8_crops(tree):
    data = load(tree)
    batches = train_batches(data, 4, seed=0)
    assert len(batches) == 4 and batches.num_examples == 14
    seen = []
    for x, y, index in batches.batches(0):
        assert x.dtype == torch.float32 and x.shape[1:] == (3, SIZE, SIZE) and y.dtype == index.dtype == torch.int64
        assert torch.equal(y, data.train_y[index])
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255
        raw = x * std + mean
        assert torch.allclose(raw, raw.round(), atol=1e-3) and raw.min() >= -1e-3 and raw.max() <= 255 + 1e-3
        seen += index.tolist()
    assert sorted(seen) == list(range(14))
    assert data.pixel_low == pytest.approx(-0.456 / 0.224) and data.pixel_high == pytest.approx(0.544 / 0.224)


def test_order_is_batchers_and_a_function_of_seed_and_epoch(tree):
    data = load(tree)
    first = epoch(data, seed=3)
    assert_same(first, epoch(load(tree), seed=3))
    reference = Batcher(torch.zeros(14, 1), torch.zeros(14), 3, seed=3)
    assert [i.tolist() for _, _, i in first] == [i.tolist() for _, _, i in reference.batches(0)]
    assert [i.tolist() for _, _, i in epoch(data, seed=3, n=1)] != [i.tolist() for _, _, i in first]
    assert not torch.equal(epoch(data, seed=4)[0][0], first[0][0])


def test_crops_depend_on_seed_epoch_and_file_only(tree):
    """The same file gets the same crop in the same epoch whatever batch it is in, and another crop in another epoch."""
    data = load(tree)
    by_index = {int(i): x[k] for x, _, index in epoch(data, batch_size=3) for k, i in enumerate(index)}
    for x, _, index in epoch(data, batch_size=5):
        for k, i in enumerate(index):
            assert torch.equal(x[k], by_index[int(i)])
    other = {int(i): x[k] for x, _, index in epoch(data, batch_size=3, n=1) for k, i in enumerate(index)}
    assert sum(not torch.equal(other[i], by_index[i]) for i in by_index) >= 12


def test_resume_mid_epoch_sees_exactly_the_rest(tree):
    data = load(tree)
    whole = epoch(data, n=2)
    assert_same(epoch(data, n=2, first=2), whole[2:])


def test_ranks_partition_the_global_batch(tree):
    data = load(tree)
    single = epoch(data, batch_size=6)  # global batches of 6, 6, 2
    ranks = [epoch(data, batch_size=3, rank=r, world=2) for r in range(2)]
    assert len(train_batches(data, 3, 0, 1, 2)) == len(single) == 3
    for whole, part0, part1 in zip(single, *ranks):
        for t, u, v in zip(whole, part0, part1):
            assert torch.equal(t, torch.cat([u, v]))


def test_workers_give_the_same_batches(tree):
    assert_same(epoch(load(tree), n=1, first=1), epoch(load(tree, workers=2), n=1, first=1))
    assert_same(list(load(tree).eval_batches("test", 4)), list(load(tree, workers=2).eval_batches("test", 4)))


def test_eval_batches_resize_and_centre_crop(tmp_path):
    """Shorter side to round(16 * 256 / 224) = 18, then the centre 16 x 16, no randomness."""
    root = write_tree(tmp_path, classes=1, train=2, val=0)
    ramp = np.add.outer(np.arange(48), 2 * np.arange(64)).astype(np.uint8)  # smooth, 64 wide and 48 high
    Image.fromarray(np.stack([ramp, 255 - ramp, ramp // 2], axis=2)).save(root / "val" / "class0" / "ramp.png")
    data = load_dataset("imagefolder", root, val_size=0, image_size=SIZE, workers=0, normalize=False)
    (x, y), = data.eval_batches("test", 8)
    expected = Image.open(root / "val" / "class0" / "ramp.png").resize((24, 18), Image.Resampling.BILINEAR).crop((4, 1, 20, 17))
    expected = torch.from_numpy(np.asarray(expected).copy()).permute(2, 0, 1).float() / 255
    assert x.shape == (1, 3, SIZE, SIZE) and y.tolist() == [0]
    assert (x[0] - expected).abs().max() < 3 / 255
    assert torch.equal(x, next(data.eval_batches("test", 8))[0])
    (empty, labels), = data.eval_batches("val", 8)
    assert empty.shape == (0, 3, SIZE, SIZE) and labels.shape == (0,)


def test_eval_subset_labels_match_batches(tree):
    data = load(tree)
    ys = torch.cat([y for _, y in data.eval_batches("train", 4, limit=5)])
    assert ys.shape == (5,) and torch.equal(ys, data.labels("train", 5))
    assert torch.equal(torch.cat([y for _, y in data.eval_batches("train", 4)]), data.labels("train"))


@given(st.integers(1, 3000), st.integers(1, 3000), st.integers(0, 2**32 - 1))
def test_random_resized_box_lies_inside_the_image(width, height, seed):
    left, top, w, h = random_resized_box(width, height, np.random.default_rng(seed))
    assert 0 <= left and left + w <= width and 0 <= top and top + h <= height and w > 0 and h > 0
    if w * h < width * height:  # a random crop, or for an elongated image a centre crop at the clamped ratio
        assert CROP_RATIO[0] - 1 / h <= w / h <= CROP_RATIO[1] + 1 / h
    if CROP_RATIO[0] <= width / height <= CROP_RATIO[1]:
        assert w * h >= 0.9 * CROP_SCALE[0] * width * height - (w + h)


def one_line(err: LocalLearnError) -> str:
    message = str(err)
    assert "\n" not in message and message
    return message


def broken(tmp_path: Path, how: str) -> Path:
    root = write_tree(tmp_path / "data", classes=2, train=2, val=1)
    if how == "no train folder":
        (root / "train").rename(root / "training")
    elif how == "no val folder":
        (root / "val").rename(root / "validation")
    elif how == "no classes":
        for path in sorted((root / "train").rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
    elif how == "empty class":
        (root / "train" / "class2").mkdir()
        (root / "train" / "class2" / "notes.txt").write_text("no images here")
    elif how == "unknown val class":
        (root / "val" / "dog").mkdir()
        Image.new("RGB", (8, 8)).save(root / "val" / "dog" / "a.jpg")
    elif how == "loose val images":
        for path in list((root / "val").rglob("*.*")):
            path.rename(root / "val" / f"{path.parent.name}-{path.name}")
        for folder in (root / "val").iterdir():
            folder.rmdir() if folder.is_dir() else None
    return root


@pytest.mark.parametrize(
    ("how", "error", "message"),
    [
        ("missing dir", DataError, "does not exist"),
        ("no train folder", DataError, "train is missing"),
        ("no val folder", DataError, "val is missing"),
        ("no classes", DataError, "has no class folders"),
        ("empty class", DataError, "class2 has no images"),
        ("unknown val class", DataError, "class folder(s) dog that"),
        ("loose val images", DataError, "its 2 images must be sorted into one folder per class"),
    ],
)
def test_bad_folders_are_one_line_errors(tmp_path, how, error, message):
    root = tmp_path / "nothing" if how == "missing dir" else broken(tmp_path, how)
    with pytest.raises(error) as caught:
        load(root)
    assert message in one_line(caught.value)


def test_no_dir_and_bad_subset_are_usage_errors(tree):
    with pytest.raises(UsageError, match="needs data.dir"):
        load_dataset("imagefolder", None)
    with pytest.raises(UsageError, match=r"data.train_subset=15 must be in 1..14"):
        load(tree, train_subset=15)


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_image_is_a_one_line_error_naming_it(tmp_path, workers, damage):
    root = write_tree(tmp_path, classes=2, train=3, val=1)
    victim = root / "train" / "class1" / "img0.JPEG"
    victim.write_bytes(b"not an image at all" if damage == "garbage" else victim.read_bytes()[:200])
    data = load_dataset("imagefolder", root, val_size=0, image_size=SIZE, workers=workers)
    with pytest.raises(DataError) as caught:
        epoch(data)
    assert one_line(caught.value).startswith(f"cannot read image {victim}")
    with pytest.raises(DataError, match="cannot read image"):
        list(data.eval_batches("train", 4))


def test_a_tiny_imagenet_preset_run_on_the_command_line(tmp_path, tree, capsys):
    out = tmp_path / "run"
    status = main([
        "train", "blockwise-barlow-imagenet", "--out", str(out), "--data-dir", str(tree), "--quiet",
        f"data.image_size={SIZE}", "data.batch_size=4", "data.workers=0", "data.val_size=4", "data.eval_batch_size=5",
        "model.width=4", "method.expand=16", "method.projector=[16,16]", "train.epochs=1", "eval.probe_epochs=1",
        "eval.feature_train_size=8",
    ])
    assert status == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == "imagefolder" and summary["epochs"] == 1 and 0 <= summary["test_accuracy"] <= 1
    assert [b["name"] for b in summary["per_block"]] == ["block1", "block2", "block3", "block4"]
    assert all(0 <= b["knn_accuracy"] <= 1 for b in summary["per_block"])


def test_hard_negatives_need_the_data_in_memory(tmp_path, tree, capsys):
    status = main([
        "train", "ff-supervised-small", "--out", str(tmp_path / "run"), "--data-dir", str(tree), "--quiet",
        "data.name=imagefolder", f"data.image_size={SIZE}", "data.workers=0", "data.val_size=4", "data.batch_size=4",
        "model.hidden=[16,16]", "train.epochs=1", "method.negatives=hard",
    ])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "\n" not in err and "method.negatives=hard" in err and "imagefolder" in err


def test_in_memory_splits_offer_the_same_evaluation_interface(tmp_path):
    from helpers import prototype_splits

    data = prototype_splits(n_train=50, n_test=20, size=8)
    assert data.split_size("train") == 50 and data.split_size("val") == 100
    assert torch.equal(torch.cat([x for x, _ in data.eval_batches("test", 7)]), data.test_x)
    subset = torch.cat([x for x, _ in data.eval_batches("train", 7, limit=10)])
    assert subset.shape == (10, 1, 8, 8) and torch.equal(data.labels("train", 10), torch.cat([y for _, y in data.eval_batches("train", 7, limit=10)]))
    (x, y), = replace(data, val_x=data.val_x[:0], val_y=data.val_y[:0]).eval_batches("val", 7)
    assert x.shape == (0, 1, 8, 8)
