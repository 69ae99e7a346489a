"""Typed dataclass configs from plain dicts (parsed YAML / JSON), with errors naming the key."""

from __future__ import annotations

import dataclasses
import math

from dragnuwa.errors import UserError


def dataclass_from_dict(cls, data, where: str):
    """Build ``cls`` from ``data``, validating every key against the field's default type.

    Unknown keys, wrong types (an int is accepted for a float) and non-mappings raise ``UserError``
    naming the dotted key, e.g. ``model.unet.channels: expected a list of integers``.
    """
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(map(str, set(data) - set(fields)))  # YAML keys may be numbers too
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(fields)})")
    defaults, kwargs = cls(), {}
    for name, value in data.items():
        default, key = getattr(defaults, name), f"{where}.{name}"
        if dataclasses.is_dataclass(default):
            kwargs[name] = dataclass_from_dict(type(default), value, key)
        elif isinstance(default, tuple):
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) for v in value):
                raise UserError(f"{key}: expected a list of integers, got {value!r}")
            kwargs[name] = tuple(value)
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            kwargs[name] = float(value)
        elif isinstance(default, float) and isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{key}: expected a finite number, got {value!r}")
        elif type(value) is not type(default):
            raise UserError(f"{key}: expected {type(default).__name__}, got {value!r}")
        else:
            kwargs[name] = value
    return cls(**kwargs)
