"""The run configuration: a typed schema (pydantic), YAML presets and `KEY=VALUE` overrides.

A config is built in three layers: the schema's defaults, a preset YAML file, then
overrides given on the command line as dotted keys with YAML values. The `method`
section is validated by the schema that the chosen method registers, so a new method
brings its own keys without touching this file.
"""

from __future__ import annotations

import copy
import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from locallearn.errors import UsageError


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading `1e-3` as a float as YAML 1.2 does (PyYAML alone reads a string)."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+|\.inf|\.nan)$", re.X | re.I),
    list("-+0123456789."),
)


def load_yaml(text: str):
    return yaml.load(text, Loader=YamlLoader)


class Section(BaseModel):
    """A config section: unknown keys are errors, values are checked strictly."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)


class DataConfig(Section):
    name: Literal["mnist", "fashion-mnist", "cifar10", "imagefolder"] = "fashion-mnist"
    dir: Optional[str] = None
    batch_size: int = Field(100, gt=0)
    eval_batch_size: int = Field(1000, gt=0)
    train_subset: Optional[int] = Field(None, gt=0)
    val_size: int = Field(5000, ge=0)
    normalize: bool = True
    download: bool = True
    image_size: int = Field(224, gt=0)
    workers: int = Field(4, ge=0)
    crop_scale: float = Field(0.08, gt=0, le=1)


class ModelConfig(Section):
    """The backbone. `mlp` uses `hidden`; `conv` and `locally-connected` (a conv without weight
    sharing) use `channels` and the per-layer keys after it, each given as one number for
    every layer or a list with one per layer. `pool` is the max/avg pooling window applied
    to a layer's input (1 = none). `norm_over` is what the input norm of an image layer
    after the first normalises: the whole example, or the channels at each position (use
    `position` with a goodness taken per position); the image is always normalised whole.
    `groups` (conv only) splits a layer's convolution into that many groups: with one per
    class, every other layer keeps each class's channels apart (the CFSE blocks of
    CwComp). `out_norm: batch` ends each mlp, conv or locally connected layer with
    BatchNorm after the activation (CwComp's layers).

    `vgg` uses the same per-layer keys, each layer `[pool] -> conv -> BatchNorm -> activation`
    (no input norm). `resnet18` and `resnet50` are four stages (the stem in the first) of
    base width `width`; `stem` is ImageNet's 7x7/2 conv + max-pool or, for small images, one
    3x3/1 conv (`auto`: ImageNet's for inputs of 128 pixels or more). `activity_noise`
    (vgg, resnet): in training, Gaussian noise of this many times the activity's std is
    added to every layer's (stage's) output (Siddiqui et al. 2023 used 0.25). `dropout`
    (mlp, conv, locally-connected): in training, the normalised input units of every layer
    after the first are zeroed with this probability (inverted dropout, on a stream saved
    with the weights); `input_dropout` does the same to the first layer's input, the image
    (in supervised FF, the image with its label).
    """

    arch: Literal["mlp", "locally-connected", "conv", "vgg", "resnet18", "resnet50"] = "mlp"
    hidden: list[int] = Field(default_factory=lambda: [1000, 1000, 1000])
    channels: list[int] = Field(default_factory=lambda: [32, 64, 128])
    kernel_size: list[int] = Field(3, validate_default=True)
    stride: list[int] = Field(1, validate_default=True)
    padding: list[int] = Field(1, validate_default=True)
    pool: list[int] = Field(1, validate_default=True)
    groups: list[int] = Field(1, validate_default=True)
    pool_kind: Literal["max", "avg"] = "max"
    out_norm: Literal["none", "batch"] = "none"
    norm_over: Literal["example", "position"] = "example"
    activation: Literal["relu", "relu-fullgrad", "gelu", "tanh"] = "relu"
    input_norm: Literal["rms", "l2", "none"] = "rms"
    width: int = Field(64, gt=0)
    stem: Literal["auto", "small", "imagenet"] = "auto"
    activity_noise: float = Field(0.0, ge=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    input_dropout: float = Field(0.0, ge=0, lt=1)
    blackbox: Literal["none", "sign", "quantize", "kwta"] = Field(
        "none", description="a fixed non-differentiable box on every layer's input but the first, the same in training and evaluation: "
        "none, sign (binary spikes), quantize (blackbox_levels levels), kwta (fixed random k-winners-take-all, blackbox_k winners)")
    blackbox_levels: int = Field(4, ge=2, description="model.blackbox=quantize: how many evenly spaced levels span each example's range")
    blackbox_k: int = Field(50, gt=0, description="model.blackbox=kwta: how many units (channels at each position) stay active")
    blackbox_grad: Literal["none", "straight-through"] = Field(
        "none", description="straight-through: the gradient passes a black box unchanged, which allows boxes inside a block (coarser train.granularity)")

    @field_validator("hidden", "channels")
    @classmethod
    def _positive_widths(cls, widths: list[int]) -> list[int]:
        if not widths or any(w <= 0 for w in widths):
            raise ValueError("must be a non-empty list of positive widths")
        return widths

    @field_validator("kernel_size", "stride", "padding", "pool", "groups", mode="before")
    @classmethod
    def _per_layer(cls, value: Any, info: ValidationInfo) -> list[int]:
        layers = len(info.data.get("channels", []))
        values = [value] * layers if type(value) is int else value
        if not (isinstance(values, list) and all(type(v) is int for v in values)):
            raise ValueError("must be an integer, or a list of integers with one per layer of model.channels")
        if len(values) != layers:
            raise ValueError(f"needs one value per layer of model.channels ({layers}), or a single number")
        least = 0 if info.field_name == "padding" else 1
        if any(v < least for v in values):
            raise ValueError(f"must be at least {least}")
        return values


GRANULARITY = re.compile(r"^(layer|end-to-end|block:[1-9][0-9]*)$")


class TrainConfig(Section):
    epochs: int = Field(10, gt=0)
    granularity: str = "layer"
    seed: int = 0
    threads: Optional[int] = Field(None, gt=0)
    device: str = "auto"
    eval_every: int = Field(1, ge=0)
    precision: Literal["fp32", "bf16"] = "fp32"
    channels_last: bool = False
    compile: bool = False

    @field_validator("granularity")
    @classmethod
    def _granularity(cls, value: str) -> str:
        if not GRANULARITY.match(value):
            raise ValueError("must be 'layer', 'end-to-end' or 'block:K' with K a positive integer")
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.match(r"^(auto|cpu|cuda(:[0-9]+)?|mps)$", value):
            raise ValueError("must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
        return value


class OptimConfig(Section):
    name: Literal["adam", "sgd", "lars"] = "adam"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    trust_coefficient: float = Field(0.001, gt=0)
    schedule: Literal["constant", "linear-decay", "cosine"] = "constant"
    decay_start: float = Field(0.5, ge=0, le=1)
    warmup: float = Field(0.0, ge=0, lt=1)
    block_lr_scale: Optional[list[float]] = None  # factors of `lr` for the blocks in order, the last for all later ones (null: 1)

    @field_validator("block_lr_scale")
    @classmethod
    def _positive_factors(cls, factors: Optional[list[float]]) -> Optional[list[float]]:
        if factors is not None and (not factors or any(f <= 0 for f in factors)):
            raise ValueError("must be a non-empty list of positive factors, one per block (the last one holds for any later blocks)")
        return factors


class EvalConfig(Section):
    probes: bool = True
    probe_epochs: int = Field(10, gt=0)
    probe_lr: float = Field(1e-3, gt=0)
    probe_schedule: Literal["constant", "cosine"] = "constant"  # cosine: the probe's rate decays to zero over its epochs
    probe_weight_decay: float = Field(0.0, ge=0)  # L2 penalty (weight_decay/2)·||W||² on the probes' weights, not their biases
    probe_flip: bool = False  # probes also train on every training image mirrored left-right (the usual linear-evaluation augmentation)
    knn: bool = True
    knn_k: int = Field(20, gt=0)
    knn_temperature: float = Field(0.07, gt=0)
    feature_train_size: Optional[int] = Field(None, gt=0)  # training examples (a fixed subset) for probes and kNN; None = all


class DistributedConfig(Section):
    """How several processes (launched by torchrun) or devices share the work.

    `data`: every rank holds the whole network and trains on its shard of each batch, and
    each block's gradients are averaged across ranks (DistributedDataParallel per block).
    `pipeline`: the blocks are split over the ranks (or over `devices` in one process);
    each rank trains its blocks on the activations the rank before it sends, and sends
    its detached output on through a queue of at most `queue_depth` batches.
    """

    mode: Literal["data", "pipeline"] = "data"
    backend: Literal["auto", "gloo", "nccl"] = "auto"
    queue_depth: int = Field(2, gt=0)
    devices: Optional[list[str]] = None
    timeout_s: int = Field(1800, gt=0)


class LoggingConfig(Section):
    progress: bool = True
    tensorboard: bool = False


class MethodSection(BaseModel):
    """The method's name; its other keys are validated by the method's own schema."""

    model_config = ConfigDict(extra="allow")
    name: str


class Config(Section):
    description: str = ""
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    method: MethodSection
    train: TrainConfig = Field(default_factory=TrainConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def preset_names() -> list[str]:
    folder = resources.files("locallearn") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def preset_text(name: str) -> str:
    """The YAML text of a built-in preset, or of a YAML file when `name` is a path to one."""
    if name.endswith((".yaml", ".yml")) and Path(name).is_file():
        return Path(name).read_text()
    if name not in preset_names():
        raise UsageError(f"unknown preset {name!r}; valid presets: {', '.join(preset_names())}")
    return (resources.files("locallearn") / "presets" / f"{name}.yaml").read_text()


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b=VALUE` -> (['a', 'b'], VALUE parsed as YAML)."""
    key, sep, raw = item.partition("=")
    if not sep or not key or not re.match(r"^[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*$", key):
        raise UsageError(f"bad override {item!r}; expected KEY=VALUE with a dotted key, e.g. train.epochs=2")
    try:
        value = load_yaml(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise UsageError(f"bad override {item!r}: the value is not valid YAML") from None
    return key.split("."), value


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for i, part in enumerate(path[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UsageError(f"'{'.'.join(path[: i + 1])}' is a value, not a section; cannot set '{'.'.join(path)}'")
        node = child
    node[path[-1]] = value


def _format_error(err: ValidationError, prefix: str, schema: type[BaseModel]) -> str:
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"]]
    key = ".".join([prefix, *loc] if prefix else loc)
    if first["type"] == "extra_forbidden":
        section = _schema_at(schema, loc[:-1])
        valid = sorted(section.model_fields) if section is not None else []
        return f"unknown key {key!r}; valid keys here: {', '.join(valid)}"
    if first["type"] == "missing":
        return f"missing required key {key!r}"
    got = first.get("input")
    message = first["msg"].removeprefix("Value error, ")
    return f"invalid value for {key!r}: {message} (got {got!r})"


def _schema_at(schema: type[BaseModel], loc: list[str]) -> type[BaseModel] | None:
    for part in loc:
        field = schema.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        schema = annotation
    return schema


def validate(tree: dict[str, Any]) -> Config:
    """Validate a raw config tree, including the method's own section."""
    from locallearn.methods import method_schema

    try:
        config = Config.model_validate(tree)
    except ValidationError as err:
        raise UsageError(_format_error(err, "", Config)) from None
    method_tree = config.method.model_dump()
    schema = method_schema(method_tree.pop("name"))
    try:
        method_cfg = schema.model_validate(method_tree)
    except ValidationError as err:
        raise UsageError(_format_error(err, "method", schema)) from None
    config.method = MethodSection(name=config.method.name, **method_cfg.model_dump(mode="json"))
    return config


def load_config(preset: str, overrides: list[str] = ()) -> Config:
    """Resolve preset + overrides into a validated `Config`."""
    try:
        tree = load_yaml(preset_text(preset)) or {}
    except yaml.YAMLError as err:
        raise UsageError(f"preset {preset!r} is not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(tree, dict):
        raise UsageError(f"preset {preset!r} must be a YAML mapping")
    return validate(apply_overrides(tree, overrides))


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of the raw config `tree` with each `KEY=VALUE` override set."""
    tree = copy.deepcopy(tree)
    for item in overrides:
        path, value = parse_override(item)
        _set_path(tree, path, value)
    return tree


def method_options(config: Config, schema: type[BaseModel]) -> BaseModel:
    """The method section as the method's own typed model."""
    tree = config.method.model_dump()
    tree.pop("name")
    return schema.model_validate(tree)
