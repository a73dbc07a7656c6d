"""The settings reference of ``docs/configuration.md``, generated from the settings models so the
documentation cannot drift from the code (a test compares them)."""

from __future__ import annotations

import enum
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from daemon.settings import Settings

START = "<!-- settings-reference:start -->"
END = "<!-- settings-reference:end -->"
_DYNAMIC_DEFAULTS = {("kafka", "instance_id"): "the host name", ("model", "registry"): "the bundled registry"}


def settings_reference() -> str:
    """Markdown tables of every setting: key, type, default, environment variable, meaning."""
    parts = [START]
    for section, field in Settings.model_fields.items():
        model = field.annotation
        listed = typing.get_origin(model) is list
        if listed:  # a list of tables, set in the environment as one JSON list
            (model,) = typing.get_args(model)
        assert isinstance(model, type) and issubclass(model, BaseModel)
        parts.append(f"\n### `[[{section}]]`\n" if listed else f"\n### `[{section}]`\n")
        if model.__doc__:
            parts.append(" ".join(model.__doc__.split()) + "\n")
        if listed:
            parts.append(f"In the environment: `CANDLECAST_{section.upper()}` holds the whole list as JSON.\n")
        parts.append("| key | type | default | environment | meaning |")
        parts.append("|---|---|---|---|---|")
        for name, info in model.model_fields.items():
            env = f"CANDLECAST_{section.upper()}" if listed else f"CANDLECAST_{section.upper()}__{name.upper()}"
            default = _DYNAMIC_DEFAULTS.get((section, name)) or _default(info)
            meaning = (info.description or "").replace("|", "\\|")
            parts.append(f"| `{name}` | {_type(info.annotation)} | {default} | `{env}` | {meaning} |")
    parts.append(END)
    return "\n".join(parts) + "\n"


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        value: Any = info.default_factory()  # type: ignore[call-arg]
    else:
        value = info.default
    if value is None:
        return "unset"
    if isinstance(value, BaseModel):
        return "the top-level section"
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value == {}:
        return "none"
    return f"`{value}`"


def _type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type(a) for a in args if a is not type(None)) + " (optional)"
    if origin is dict:
        return f"table of {_type(args[1])}"
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            return " \\| ".join(f"`{m.value}`" for m in annotation)
        if annotation is SecretStr:
            return "secret string"
        if issubclass(annotation, BaseModel):
            return f"`{annotation.__name__}`"
        return {
            "str": "string",
            "int": "integer",
            "float": "number",
            "bool": "boolean",
            "PosixPath": "path",
            "Path": "path",
        }.get(annotation.__name__, annotation.__name__)
    return str(annotation)


def write_reference(doc: Path) -> None:
    """Replace the reference section of a Markdown file with the generated one."""
    text = doc.read_text()
    before, _, rest = text.partition(START)
    _, _, after = rest.partition(END)
    doc.write_text(before + settings_reference() + after.lstrip("\n"))
