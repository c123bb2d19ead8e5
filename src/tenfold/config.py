"""Configs: pydantic models, YAML presets and ``--set a.b=c`` overrides.

Every experiment has a :class:`Config` subclass whose defaults are its ``quick`` preset. The other tiers
(``standard``, ``paper``, and variants such as ``paper-gesture``) are YAML files under
``tenfold/papers/<paper>/presets/<experiment>/<preset>.yaml`` that list only what differs from those defaults. A bad value fails before any work starts with a :class:`~tenfold.errors.ConfigError` naming
the field path, the value and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from tenfold.errors import ConfigError

C = TypeVar("C", bound="Config")

PAPERS_ROOT = Path(__file__).parent / "papers"


class Config(BaseModel):
    """Base config: unknown fields are errors, assignments are validated, values are plain data.

    Non-finite floats (``inf``, ``nan``) are refused; a field that means to allow them says so with
    ``Field(allow_inf_nan=True)``.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _describe(err: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in err.get("loc", ())) or "<config>"
    msg = err.get("msg", "invalid value")
    if err.get("type") == "extra_forbidden":
        return f"unknown field '{loc}'"
    if not err.get("loc"):  # a model-level validator: its message names the fields; the input is the whole config
        return msg.removeprefix("Value error, ")
    value = err.get("input")
    return f"field '{loc}'={value!r}: {msg}"


def build(cls: type[C], data: dict[str, Any] | None = None, source: str = "config") -> C:
    """Validate ``data`` into ``cls``; raise one-line :class:`ConfigError` naming the bad field."""
    try:
        return cls.model_validate(data or {})
    except ValidationError as exc:
        errors = exc.errors()
        first = _describe(errors[0])
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(f"{source}: {first}{more}") from None


def read_yaml_mapping(path: str | Path, *, kind: str = "config", error: type[Exception] = ConfigError,
                      allow_empty: bool = True) -> dict[str, Any]:
    """Read a YAML file holding a mapping; every error names the ``kind`` of file and its path."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{kind} file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise error(f"{kind} file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None and allow_empty:
        return {}
    if not isinstance(data, dict):
        raise error(f"{kind} file {path} must hold a mapping of fields, got {type(data).__name__}")
    return data


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config YAML mapping (an empty file is an empty mapping); errors name the file."""
    return read_yaml_mapping(path)


def _coerce(text: str) -> Any:
    """Parse an override value with YAML rules: 3 -> int, 1e-3 -> float, true -> bool, [1,2] -> list."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    # YAML 1.1 reads "1e-3" as a string; accept the usual float spellings.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``a.b=c`` overrides to a nested dict (copied); malformed overrides raise ConfigError."""
    import copy

    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is malformed: expected KEY=VALUE, e.g. epochs=3")
        key, _, raw = item.partition("=")
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} has an empty field name")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: field '{part}' is not a group of fields")
            node = child
        node[parts[-1]] = _coerce(raw.strip())
    return out


def preset_dir(experiment: str) -> Path:
    """``tenfold/papers/<paper>/presets/<experiment>/``: the folder of the experiment's preset files (it may
    not exist for an experiment that has only its defaults)."""
    found = sorted(PAPERS_ROOT.glob(f"*/presets/{experiment}"))
    return found[0] if found else PAPERS_ROOT / "_none" / "presets" / experiment


def preset_path(experiment: str, preset: str) -> Path:
    return preset_dir(experiment) / f"{preset}.yaml"


def available_presets(experiment: str) -> list[str]:
    found = {"quick"}
    folder = preset_dir(experiment)
    if folder.is_dir():
        found |= {p.stem for p in folder.glob("*.yaml")}
    return sorted(found)


def resolve(cls: type[C], experiment: str, preset: str = "quick", overrides: list[str] | tuple[str, ...] = (),
            config_file: str | Path | None = None) -> C:
    """Defaults <- preset YAML <- optional user YAML file <- ``--set`` overrides, then validate.

    Every layer deep-merges over the one below, as OmegaConf and LightningCLI do: a preset or an override
    naming ``group.key`` changes that key only and keeps the group's other fields at the experiment's
    values (not at the sub-config class's defaults). Lists are replaced whole.
    """
    data: dict[str, Any] = cls().model_dump()
    path = preset_path(experiment, preset)
    if path.is_file():
        data = _merge(data, load_yaml(path))
    elif preset != "quick":
        raise ConfigError(
            f"preset '{preset}' does not exist for experiment '{experiment}': choose one of "
            f"{', '.join(available_presets(experiment))}"
        )
    if config_file is not None:
        data = _merge(data, load_yaml(config_file))
    data = apply_overrides(data, overrides)
    return build(cls, data, source=f"{experiment} ({preset})")


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` deep-merged over ``base`` (both left unchanged): mappings merge key by key, the rest replaces."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def to_yaml(cfg: Config) -> str:
    """The resolved config as YAML, each field preceded by its description (``Field(description=...)``)."""
    lines: list[str] = []
    _yaml_lines(cfg, 0, lines)
    return "\n".join(lines) + "\n"


def _yaml_lines(cfg: Config, indent: int, lines: list[str]) -> None:
    pad = " " * indent
    for name, field in type(cfg).model_fields.items():
        value = getattr(cfg, name)
        if field.description:
            lines.extend(f"{pad}# {text}" for text in field.description.splitlines())
        if isinstance(value, Config):
            lines.append(f"{pad}{name}:")
            _yaml_lines(value, indent + 2, lines)
        elif isinstance(value, dict) and value and all(isinstance(v, Config) for v in value.values()):
            lines.append(f"{pad}{name}:")
            for key, sub in value.items():
                lines.append(f"{pad}  {key}:")
                _yaml_lines(sub, indent + 4, lines)
        else:
            plain = value.model_dump() if isinstance(value, BaseModel) else value
            text = yaml.safe_dump(_plain(plain), default_flow_style=True, width=10**6).strip()
            text = text.removesuffix("...").strip()
            lines.append(f"{pad}{name}: {text}")


def _plain(value: Any) -> Any:
    """Values as YAML can write them: tuples as lists, paths as strings."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value
