"""`wasm-torch serve --config FILE`: every `ServeSettings` field from a TOML or JSON file, and
per-model overrides.

    # serve.toml
    max_body_bytes = 67108864          # field names and units are ServeSettings' own (bytes, seconds)
    read_timeout_s = 10
    model_control = "explicit"
    [models.resnet]                    # per model: pool, sandbox and size settings (settings.PER_MODEL)
    max_batch_size = 32
    max_body_bytes = 134217728

Strict: an unknown key, a value of the wrong type (a string for a number, a number for a flag) or
a bad value is a `SettingsError` naming the file and the key, at start-up. Relative paths (audit
log, keys, keyring) are relative to the file. Flags given on the command line win over the file.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from wasm_torch.serve.settings import ServeSettings, SettingsError

TYPES = {f.name: str(f.type) for f in fields(ServeSettings)}


def read_config(path: Path) -> dict[str, Any]:
    """The file's settings as `ServeSettings` keyword arguments (checked and converted)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SettingsError(f"cannot read the config file {path}: {e}") from None
    try:
        doc = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as e:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise SettingsError(f"the config file {path} is not valid {kind}: {e}") from None
    if not isinstance(doc, dict):
        raise SettingsError(f"the config file {path} must hold a table of settings")
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key == "models":
            out["model_settings"] = _models(value, path)
            continue
        if key not in TYPES or key == "model_settings":
            raise SettingsError(f"{path}: unknown setting {str(key)[:60]!r} (settings are ServeSettings' field names)")
        out[key] = convert(key, value, path)
    return out


def _models(value: Any, path: Path) -> dict[str, dict[str, Any]]:
    if not isinstance(value, Mapping):
        raise SettingsError(f"{path}: 'models' must be a table of model names, each a table of settings")
    out: dict[str, dict[str, Any]] = {}
    for name, table in value.items():
        if not isinstance(table, Mapping):
            raise SettingsError(f"{path}: models.{name} must be a table of settings")
        out[str(name)] = {}
        for key, v in table.items():
            if key not in TYPES:
                raise SettingsError(f"{path}: models.{name}: unknown setting {str(key)[:60]!r}")
            out[str(name)][key] = convert(key, v, path, f"models.{name}.")
    return out


def convert(key: str, value: Any, path: Path, prefix: str = "") -> Any:
    """A value of the file, as the field `key` holds it; SettingsError when its type is wrong."""
    kind = TYPES[key]
    where = f"{path}: {prefix}{key}"
    if value is None or (isinstance(value, str) and value == "" and "None" in kind):
        if "None" in kind:
            return None
        raise SettingsError(f"{where} cannot be empty")
    if kind.startswith("bool"):
        if type(value) is not bool:
            raise SettingsError(f"{where} must be true or false, got {value!r}")
        return value
    if "Path" in kind and "tuple" in kind:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SettingsError(f"{where} must be a list of file paths")
        return tuple(_path(v, path) for v in value)
    if "Path" in kind:
        if not isinstance(value, str):
            raise SettingsError(f"{where} must be a file path")
        return _path(value, path)
    if kind.startswith("frozenset"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SettingsError(f"{where} must be a list of strings")
        return frozenset(value)
    if kind.startswith("int"):
        if type(value) is not int:
            raise SettingsError(f"{where} must be a whole number, got {value!r}")
        return value
    if kind.startswith("float"):
        if type(value) not in (int, float) or not math.isfinite(value):
            raise SettingsError(f"{where} must be a number, got {value!r}")
        return float(value)
    if kind.startswith("str"):
        if not isinstance(value, str):
            raise SettingsError(f"{where} must be a string, got {value!r}")
        return value
    raise SettingsError(f"{where} cannot be set from a file")


def _path(text: str, config: Path) -> Path:
    p = Path(text).expanduser()
    return p if p.is_absolute() else config.parent / p


def load_settings(path: Path, base: Mapping[str, Any] | None = None, **overrides: Any) -> ServeSettings:
    """`base` (the command line's own defaults), then the file, then `overrides` (the flags given)."""
    values = {**(base or {}), **read_config(path)}
    values.update(overrides)
    try:
        return ServeSettings(**values)
    except SettingsError as e:
        raise SettingsError(f"{path}: {e}") from None
