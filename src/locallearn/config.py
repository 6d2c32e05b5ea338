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
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator

from locallearn.data import DATASETS
from locallearn.errors import UsageError, did_you_mean
from locallearn.nn.backbones import BUILDERS
from locallearn.optim import OPTIMIZERS, SCHEDULES


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
    name: Literal[tuple(DATASETS)] = Field("fashion-mnist", description="Dataset: mnist, fashion-mnist, cifar10 (held in memory) or imagefolder (an ImageNet-layout folder decoded batch by batch).")
    dir: Optional[str] = Field(None, description="Where the dataset's files are (same as --data-dir); null = the usual lookup (see Data).")
    batch_size: int = Field(100, gt=0, description="Training batch size per process (under torchrun data parallel the global batch is this times the ranks).")
    eval_batch_size: int = Field(1000, gt=0, description="Batch size of evaluation passes (classification, probes' features, kNN).")
    train_subset: Optional[int] = Field(None, gt=0, description="Train on only the first N training examples (imagefolder: N chosen by a fixed seed); null = all.")
    val_size: int = Field(5000, ge=0, description="Training examples held out for validation (the last N; imagefolder: N files by a fixed seed, at most half); 0 = train on all, validation numbers null.")
    normalize: bool = Field(True, description="Standardise pixels by the training set's mean and std (one scalar; imagefolder: ImageNet's per-channel values).")
    download: bool = Field(True, description="Download the files from the official mirrors (checksum-verified) when no local copy is found.")
    image_size: int = Field(224, gt=0, description="imagefolder: side in pixels of the square training crops and evaluation images.")
    workers: int = Field(4, ge=0, description="imagefolder: DataLoader worker processes decoding images, per training process (0 = decode in the training process).")
    crop_scale: float = Field(0.08, gt=0, le=1, description="imagefolder: least area fraction of the random resized training crop (1.0 = the largest centre crop).")


class ModelConfig(Section):
    """The backbone: its architecture and layers (each key's meaning is its description).

    Per-layer keys of conv, locally-connected and vgg (`kernel_size`, `stride`, `padding`,
    `pool`, `groups`) take one number for every layer or a list with one per layer of `channels`.
    """

    arch: Literal[tuple(BUILDERS)] = Field("mlp", description="Backbone: mlp, conv, locally-connected (a conv without weight sharing), vgg, resnet18, resnet32 (CIFAR's) or resnet50; ResNets are their stem + residual units, one layer each (see nn/resnet.py for how block:K groups them).")
    hidden: list[int] = Field(default_factory=lambda: [1000, 1000, 1000], description="mlp: widths of the hidden layers.")
    channels: list[int] = Field(default_factory=lambda: [32, 64, 128], description="conv, locally-connected, vgg: output channels of each layer.")
    kernel_size: list[int] = Field(3, validate_default=True, description="conv, locally-connected, vgg: kernel size, one for every layer or a list with one per layer.")
    stride: list[int] = Field(1, validate_default=True, description="conv, locally-connected, vgg: stride, one for every layer or one per layer.")
    padding: list[int] = Field(1, validate_default=True, description="conv, locally-connected, vgg: zero padding, one for every layer or one per layer.")
    pool: list[int] = Field(1, validate_default=True, description="conv, locally-connected, vgg: pooling window applied to each layer's input (1 = none), one for all or one per layer.")
    groups: list[int] = Field(1, validate_default=True, description="conv: grouped convolutions per layer, e.g. [1,10,1,10] for CwComp's class-wise CFSE layers (1 = ordinary).")
    pool_kind: Literal["max", "avg"] = Field("max", description="Pooling of model.pool: max or avg.")
    out_norm: Literal["none", "batch"] = Field("none", description="batch: every mlp, conv or locally connected layer ends with BatchNorm after the activation (CwComp's layers); none: no output norm.")
    norm_over: Literal["example", "position"] = Field("example", description="What the input norm of an image layer after the first normalises: the whole example, or the channels at each position (for a goodness per position).")
    activation: Literal["relu", "relu-fullgrad", "gelu", "tanh"] = Field("relu", description="relu, gelu, tanh, or relu-fullgrad (ReLU forward, identity backward, so peer normalisation reaches units that are off).")
    input_norm: Literal["rms", "l2", "none"] = Field("rms", description="Norm applied to each layer's input: rms, l2 or none (FF needs one so a layer cannot pass its goodness on).")
    width: int = Field(64, gt=0, description="resnet18, resnet50: base width (channels of the first stage); resnet32: four times its first stage (64 gives 16-32-64).")
    stem: Literal["auto", "small", "imagenet"] = Field("auto", description="resnet: imagenet (7x7/2 conv + max-pool), small (one 3x3/1 conv for 28/32-pixel images) or auto (imagenet's for inputs of 128 pixels or more).")
    activity_noise: float = Field(0.0, ge=0, description="vgg, resnet: in training, Gaussian noise of this many times the activity's std added to every layer's (stage's) output (Siddiqui et al. 0.25).")
    dropout: float = Field(0.0, ge=0, lt=1, description="mlp, conv, locally-connected: in training, each layer's normalised input units after the first layer are zeroed with this probability (inverted dropout, seeded stream saved with the weights).")
    input_dropout: float = Field(0.0, ge=0, lt=1, description="As model.dropout for the first layer's input, the image (in supervised FF, the image with its label).")
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
    epochs: int = Field(10, gt=0, description="Training epochs.")
    granularity: str = Field("layer", description="Where the graph is cut: layer (one block per layer), block:K (K blocks), end-to-end (one block: plain backprop).")
    seed: int = Field(0, description="Seed; the same seed on the same machine gives the same numbers.")
    threads: Optional[int] = Field(None, gt=0, description="Torch CPU threads (null = torch's default); may change on --resume.")
    device: str = Field("auto", description="auto (CUDA when present; under torchrun cuda:LOCAL_RANK), cpu, cuda, cuda:N or mps.")
    eval_every: int = Field(1, ge=0, description="Measure validation accuracy every this many epochs and at the last (0 = not during training).")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="fp32, or bf16 (forward and local losses under bfloat16 autocast; weights and optimizer stay fp32).")
    channels_last: bool = Field(False, description="Conv nets: weights and inputs in channels-last memory format (faster convolutions on GPUs).")
    compile: bool = Field(False, description="torch.compile each block's layers (state-dict names unchanged, so checkpoints load either way).")
    overlap: bool = Field(False, description="LoCo's overlapping blocks (Xiong et al. 2020): each block's loss also trains the block before it, crossing exactly one block boundary (not strictly local; two blocks' activations are held at a time).")

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
    name: Literal[tuple(OPTIMIZERS)] = Field("adam", description="Optimizer of every block: adam, sgd or lars (SGD with layer-wise trust ratios).")
    lr: float = Field(1e-3, gt=0, description="Learning rate.")
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd, lars: momentum.")
    weight_decay: float = Field(0.0, ge=0, description="Weight decay (L2 penalty on the weights).")
    trust_coefficient: float = Field(0.001, gt=0, description="lars: trust coefficient of the layer-wise rate.")
    schedule: Literal[tuple(SCHEDULES)] = Field("constant", description="Learning-rate schedule: constant, linear-decay (constant, then linear to zero from optim.decay_start) or cosine.")
    decay_start: float = Field(0.5, ge=0, le=1, description="linear-decay: fraction of the run after which the rate decays linearly to zero.")
    warmup: float = Field(0.0, ge=0, lt=1, description="Fraction of the steps with a linear warm-up from zero.")
    block_lr_scale: Optional[list[float]] = Field(None, description="Factors of optim.lr for the blocks in order, the last for every later block, e.g. [1,0.3] (null: 1 for all).")

    @field_validator("block_lr_scale")
    @classmethod
    def _positive_factors(cls, factors: Optional[list[float]]) -> Optional[list[float]]:
        if factors is not None and (not factors or any(f <= 0 for f in factors)):
            raise ValueError("must be a non-empty list of positive factors, one per block (the last one holds for any later blocks)")
        return factors


class EvalConfig(Section):
    probes: bool = Field(True, description="Train a linear probe on each block's features at the end (per-block accuracy).")
    probe_epochs: int = Field(10, gt=0, description="Epochs of each linear probe (and readout).")
    probe_lr: float = Field(1e-3, gt=0, description="Adam learning rate of the linear probes.")
    probe_schedule: Literal["constant", "cosine"] = Field("constant", description="Probes' rate: constant, or cosine (decayed to zero over probe_epochs, so a probe ends at the optimum of its convex loss).")
    probe_weight_decay: float = Field(0.0, ge=0, description="L2 penalty (weight_decay/2)*||W||^2 on the probes' weights, not their biases (0 = none).")
    probe_flip: bool = Field(False, description="Probes also train on every training image mirrored left-right (linear-evaluation augmentation; not for digits).")
    active_units: bool = Field(True, description="Measure each block's active units: the fraction of its outputs positive on at least one validation image (supervised FF: with any label).")
    knn: bool = Field(True, description="Measure weighted k-nearest-neighbour accuracy on each block's features.")
    knn_k: int = Field(20, gt=0, description="kNN: neighbours voting.")
    knn_temperature: float = Field(0.07, gt=0, description="kNN: temperature of the neighbours' exp(similarity / T) weights.")
    feature_train_size: Optional[int] = Field(None, gt=0, description="Training examples (a fixed subset, the same for every seed) whose features train probes and serve as kNN neighbours; null = all.")


class DistributedConfig(Section):
    """How several processes (launched by torchrun) or devices share the work.

    `data`: every rank holds the whole network and trains on its shard of each batch, and
    each block's gradients are averaged across ranks (DistributedDataParallel per block).
    `pipeline`: the blocks are split over the ranks (or over `devices` in one process);
    each rank trains its blocks on the activations the rank before it sends, and sends
    its detached output on through a queue of at most `queue_depth` batches.
    """

    mode: Literal["data", "pipeline"] = Field("data", description="Under torchrun: data (every rank trains every block on its shard of each batch) or pipeline (blocks split over the ranks).")
    backend: Literal["auto", "gloo", "nccl"] = Field("auto", description="torch.distributed backend: auto (nccl on CUDA, gloo on CPU), gloo or nccl.")
    queue_depth: int = Field(2, gt=0, description="pipeline: batches in flight per link between two stages.")
    devices: Optional[list[str]] = Field(None, description="One process, several devices: the blocks spread over them in order, e.g. [cuda:0,cuda:1] (null = one device).")
    timeout_s: int = Field(1800, gt=0, description="Timeout in seconds of collective operations; a lost rank ends the others after at most this.")


class LoggingConfig(Section):
    progress: bool = Field(True, description="Show a progress bar while training.")
    tensorboard: bool = Field(False, description="Write TensorBoard event files to the run folder's tensorboard/ (needs the tensorboard extra).")


class MethodSection(BaseModel):
    """The method's name; its other keys are validated by the method's own schema."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(description="The method (local rule); its other method.* keys are the method's own options, listed below.")
    _options: Optional[BaseModel] = PrivateAttr(None)

    @property
    def options(self) -> BaseModel:
        """The method's own options as its typed model (`Method.Options`), validated on first use only."""
        if self._options is None:
            from locallearn.methods import method_schema

            schema = method_schema(self.name)
            tree = self.model_dump()
            tree.pop("name")
            try:
                self._options = schema.model_validate(tree)
            except ValidationError as err:
                raise UsageError(_format_error(err, "method", schema)) from None
        return self._options


class Config(Section):
    summary: str = Field("", max_length=80, description="what the preset is, in one line of at most 80 characters (`locallearn presets`)")
    description: str = Field("", description="The preset's full description: what it reproduces and how its settings were chosen (`locallearn presets NAME`).")
    data: DataConfig = Field(default_factory=DataConfig, description="Dataset and batching.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The backbone and its layers.")
    method: MethodSection = Field(description="The local rule and its options.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="The training loop.")
    optim: OptimConfig = Field(default_factory=OptimConfig, description="Each block's optimizer and schedule.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation: probes, readouts and kNN.")
    distributed: DistributedConfig = Field(default_factory=DistributedConfig, description="Several processes or devices.")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Progress and TensorBoard.")

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
        raise UsageError(f"unknown preset {name!r}{did_you_mean(name, preset_names())}; valid presets: {', '.join(preset_names())}")
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
        return f"unknown key {key!r}{did_you_mean(loc[-1], valid)}; valid keys here: {', '.join(valid)}"
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
    """Validate a raw config tree, including the method's own section (whose typed options it keeps)."""
    try:
        config = Config.model_validate(tree)
    except ValidationError as err:
        raise UsageError(_format_error(err, "", Config)) from None
    options = config.method.options
    config.method = MethodSection(name=config.method.name, **options.model_dump(mode="json"))
    config.method._options = options
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
