"""Config: presets, dotted YAML overrides, and one-line errors naming the valid choices."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from helpers import prototype_splits

from locallearn.config import load_config, parse_override, preset_names
from locallearn.engine import Trainer
from locallearn.errors import UsageError
from locallearn.methods import METHODS, method_schema


def test_every_preset_validates():
    for name in preset_names():
        config = load_config(name)
        assert config.method.name in METHODS


def test_overrides_are_yaml_and_dotted():
    config = load_config("ff-bench", ["train.epochs=3", "model.hidden=[10, 20]", "optim.lr=1e-2", "data.train_subset=null", "method.negatives=hard"])
    assert config.train.epochs == 3
    assert config.model.hidden == [10, 20]
    assert config.optim.lr == pytest.approx(0.01)
    assert config.data.train_subset is None
    assert config.method.negatives == "hard"


@pytest.mark.parametrize(
    "override, expected",
    [
        ("data.foo=1", "unknown key 'data.foo'; valid keys here: batch_size, crop_scale, dir, download"),
        ("nosuch.key=1", "unknown key 'nosuch'"),
        ("method.nonsense=1", "unknown key 'method.nonsense'; valid keys here: augment, classifier"),
        ("train.epochs=abc", "invalid value for 'train.epochs'"),
        ("train.epochs=0", "invalid value for 'train.epochs'"),
        ("train.epochs=true", "Input should be a valid integer"),
        ("data.name=imagenet", "'mnist', 'fashion-mnist', 'cifar10' or 'imagefolder'"),
        ("train.granularity=blocks", "must be 'layer', 'end-to-end' or 'block:K'"),
        ("model.hidden=[10,-1]", "invalid value for 'model.hidden'"),
        ("optim.block_lr_scale=[1,0]", "invalid value for 'optim.block_lr_scale': must be a non-empty list of positive factors"),
        ("optim.block_lr_scale=[]", "invalid value for 'optim.block_lr_scale'"),
        ("method.negatives=random", "invalid value for 'method.negatives'"),
        ("method.name=nope", "unknown method 'nope'; valid methods: backprop, blockwise-ssl, ff-channelwise"),
        ("train.epochs.x=1", "'train.epochs' is a value, not a section"),
        ("justtext", "bad override 'justtext'"),
        ("a=[unclosed", "not valid YAML"),
    ],
)
def test_bad_overrides_are_one_line_usage_errors(override, expected):
    with pytest.raises(UsageError) as err:
        load_config("ff-bench", [override])
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_preset_names_the_valid_ones():
    with pytest.raises(UsageError, match="unknown preset 'nope'; valid presets: .*ff-supervised-small"):
        load_config("nope")


def test_a_yaml_file_is_a_preset(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("method: {name: backprop}\ntrain: {epochs: 4}\n")
    assert load_config(str(path)).train.epochs == 4


def test_parse_override_splits_path():
    assert parse_override("a.b.c=[1, 2]") == (["a", "b", "c"], [1, 2])


@given(st.text(max_size=40))
def test_any_override_text_is_accepted_or_a_usage_error(text):
    try:
        load_config("ff-bench", [text])
    except UsageError as err:
        assert "\n" not in str(err)


def _all_keys() -> list[str]:
    tree = load_config("ff-supervised").to_dict()
    return [f"{section}.{key}" for section, keys in tree.items() if isinstance(keys, dict) for key in keys]


yaml_values = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.lists(st.integers(-5, 5000), max_size=4), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@given(st.sampled_from(_all_keys() + ["data.nope", "train", "method", "x.y.z"]), yaml_values)
@example("method.name", "ff\nsupervised")  # a name with a line break once gave a two-line error
def test_any_typed_value_for_any_key_is_valid_or_a_one_line_usage_error(key, value):
    import json

    try:
        config = load_config("ff-supervised", [f"{key}={json.dumps(value)}"])
    except UsageError as err:
        assert "\n" not in str(err) and str(err)
    else:
        assert config.train.epochs > 0 and config.data.batch_size > 0


def test_method_options_are_validated_once_and_reach_the_method(monkeypatch):
    """validate() checks the method's options; the engine uses that very object instead of validating again."""
    config = load_config("ff-supervised-small", ["model.hidden=[8]", "method.negatives=hard"])
    options = config.method.options
    assert isinstance(options, method_schema("ff-supervised")) and options.negatives == "hard"
    monkeypatch.setattr(type(options), "model_validate", lambda *a, **k: pytest.fail("validated twice"))
    assert Trainer(config, prototype_splits(n_train=20, n_test=10, size=4)).method.options is options
