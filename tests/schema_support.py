"""Validate records against tasks/schema/comfy-job.schema.json (the contract for other languages)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "tasks" / "schema" / "comfy-job.schema.json"


@cache
def _validator(definition: str) -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator({**schema, "$ref": f"#/$defs/{definition}"}, format_checker=FormatChecker())


def check(definition: str, record: Any) -> None:
    """Raise ``AssertionError`` listing every violation of ``#/$defs/<definition>``."""
    errors = sorted(_validator(definition).iter_errors(record), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]
