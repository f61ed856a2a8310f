"""Reading the project's versioned JSON files (instances, mappings)."""

from __future__ import annotations

import json


def load_versioned(text: str, what: str, version: int, error: type[Exception]) -> dict:
    """Parse `text` as a JSON object of schema `version`; raise `error` naming what is wrong."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise error(f"not a JSON {what} file: {err}") from None
    if not isinstance(data, dict):
        raise error(f"{what}: expected a JSON object")
    found = data.get("schema_version")
    if found != version:
        raise error(f"schema_version: this {what} file has {found!r}, this mallocbench reads {version}; "
                    f"write the {what} again")
    return data
