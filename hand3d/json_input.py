"""Reading a JSON input file, with errors that name the file and say what it should hold."""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["read_json"]


def read_json(path: str | os.PathLike, what: str, kind: type, expected: str, error: type[Exception] = ValueError):
    """The parsed content of ``path``, which must be a ``kind`` (list, dict); ``error`` naming the file otherwise.

    ``what`` names the file in messages ("boxes JSON"), ``expected`` says what was wanted ("a list per sample was
    expected").
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as cause:
        raise error(f"{path}: not a readable {what} ({cause})") from cause
    if not isinstance(data, kind):
        raise error(f"{path}: not a {what}: {expected}")
    return data
