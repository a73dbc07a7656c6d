"""The published JSON Schemas: candle and signal messages (the contract with producers and
execution engines) and the model manifest, as ``candlecast schemas`` writes them to docs/schemas/.

Each schema is generated from the struct the code decodes or encodes, so it cannot drift from
it; field descriptions are the structs' attribute docstrings. Versions: a document's ``$id``
(``urn:candlecast:signal:1``) and file name (``signal.v1.json``) carry the version of the
``schema`` value messages carry (``candlecast.signal/1``). Additive changes keep the version,
so consumers must ignore fields they do not know; any other change is a new version with a new
id, published beside the old one (docs/signals.md).
"""

from __future__ import annotations

import ast
import inspect
import itertools
import textwrap
from pathlib import Path
from typing import Any

import msgspec

from daemon.candle import CANDLE_SCHEMA, SYMBOL_PATTERN, CandleMessage, candle_json_schema
from daemon.signal import SIGNAL_SCHEMA, Signal, signal_json_schema
from models.artifact import ARTIFACT_FORMAT, Manifest

DIALECT = "https://json-schema.org/draft/2020-12/schema"
PROBABILITY = {"minimum": 0.0, "maximum": 1.0}

Json = dict[str, Any]


def published_schemas() -> dict[str, Json]:
    """File name -> JSON Schema document, for docs/schemas/."""
    return {
        "candle.v1.json": document(
            candle_json_schema(), CandleMessage, CANDLE_SCHEMA, refine={"symbol": {"pattern": SYMBOL_PATTERN}}
        ),
        "signal.v1.json": document(
            signal_json_schema(),
            Signal,
            SIGNAL_SCHEMA,
            pinned="schema",
            refine={
                "signal_id": {"format": "uuid"},
                "symbol": {"pattern": SYMBOL_PATTERN},
                "ts": {"format": "date-time"},
                "produced_at": {"format": "date-time"},
                "confidence": PROBABILITY,
                "probability": PROBABILITY,
                "horizon": {"minimum": 1},
            },
        ),
        # Training.config is free-form, which msgspec describes only through a hook.
        "manifest.v1.json": document(
            msgspec.json.schema(Manifest, schema_hook=_any_json), Manifest, ARTIFACT_FORMAT, pinned="format"
        ),
    }


def render(schema: Json) -> bytes:
    """A schema as the committed file holds it: indented JSON and a final newline."""
    return msgspec.json.format(msgspec.json.encode(schema)) + b"\n"


def write_schemas(directory: Path) -> list[Path]:
    """Write every published schema into ``directory``; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in published_schemas().items():
        (directory / name).write_bytes(render(schema))
        written.append(directory / name)
    return written


def schema_id(schema: str) -> str:
    """``candlecast.signal/1`` -> ``urn:candlecast:signal:1``."""
    name, _, version = schema.removeprefix("candlecast.").partition("/")
    return f"urn:candlecast:{name}:{version}"


def document(
    generated: Json,
    struct: type[msgspec.Struct],
    schema: str,
    *,
    pinned: str | None = None,
    refine: dict[str, Json] | None = None,
) -> Json:
    """msgspec's schema of ``struct`` as a versioned document, with field descriptions.

    ``pinned`` names the field holding the schema version: the document requires it to be exactly
    ``schema``. ``refine`` adds constraints the type alone does not say, per field.
    """
    definitions: dict[str, Json] = generated["$defs"]
    for cls in _struct_types(struct):
        definition = definitions.get(cls.__name__)
        if definition is None:
            continue
        for field, text in attribute_docs(cls).items():
            if field in definition["properties"]:
                definition["properties"][field]["description"] = text
    root = definitions[struct.__name__]
    for field, constraints in (refine or {}).items():
        root["properties"][field].update(constraints)
    if pinned is not None:
        root["properties"][pinned] = {"const": schema, **root["properties"][pinned]}
        root["required"] = [*root["required"], pinned]
    return {"$schema": DIALECT, "$id": schema_id(schema), "title": schema, **generated}


def attribute_docs(cls: type) -> dict[str, str]:
    """The docstrings written under a class's annotated attributes (``field: T`` then ``\"\"\"text\"\"\"``)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for statement, following in itertools.pairwise(body):
        match statement, following:
            case ast.AnnAssign(target=ast.Name(id=name)), ast.Expr(value=ast.Constant(value=str(text))):
                docs[name] = " ".join(text.split())
    return docs


def _struct_types(struct: type[msgspec.Struct]) -> list[type[msgspec.Struct]]:
    """``struct`` and every struct type reachable from its fields."""
    found: list[type[msgspec.Struct]] = []
    pending: list[Any] = [msgspec.inspect.type_info(struct)]
    while pending:
        info = pending.pop()
        if isinstance(info, msgspec.inspect.StructType):
            if info.cls in found:
                continue
            found.append(info.cls)
            pending.extend(field.type for field in info.fields)
        elif isinstance(info, msgspec.inspect.UnionType):
            pending.extend(info.types)
        elif isinstance(info, (msgspec.inspect.ListType, msgspec.inspect.SetType, msgspec.inspect.VarTupleType)):
            pending.append(info.item_type)
        elif isinstance(info, msgspec.inspect.DictType):
            pending.append(info.value_type)
    return found


def _any_json(kind: type) -> Json:
    """Free-form fields (``object``): any JSON value."""
    if kind is object:
        return {"description": "Any JSON value."}
    raise NotImplementedError
