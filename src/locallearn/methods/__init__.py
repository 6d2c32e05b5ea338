"""Methods registered by name; `locallearn.methods.get(name)` returns the class."""

from __future__ import annotations

from locallearn.errors import UsageError, did_you_mean
from locallearn.methods.base import DataInfo, Method, MethodOptions
from locallearn.methods.backprop import Backprop
from locallearn.methods.blockwise_ssl import BlockwiseSSL
from locallearn.methods.ff_channelwise import FFChannelwise
from locallearn.methods.ff_recurrent import FFRecurrent
from locallearn.methods.ff_supervised import FFSupervised
from locallearn.methods.ff_unsupervised import FFUnsupervised

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (FFSupervised, FFUnsupervised, FFChannelwise, FFRecurrent, Backprop, BlockwiseSSL)}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator adding a method to the registry (for methods defined outside the package)."""
    METHODS[cls.name] = cls
    return cls


def get(name: str) -> type[Method]:
    if name not in METHODS:
        raise UsageError(f"unknown method {name!r}{did_you_mean(name, METHODS)}; valid methods: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def method_schema(name: str) -> type[MethodOptions]:
    return get(name).Options


__all__ = ["DataInfo", "Method", "MethodOptions", "METHODS", "get", "register", "method_schema"]
