"""Write files so that a killed job never leaves a half-written file under the final name."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> None:
    """Call write(tmp_path) on a temporary file beside `path`, then rename it over `path`.

    A killed job leaves no half-written file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, value: object, indent: int | None = None) -> None:
    """``value`` as JSON (UTF-8, a final newline when indented) to ``path`` atomically."""
    text = json.dumps(value, indent=indent) + ("\n" if indent is not None else "")
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def atomic_torch_save(path: str | os.PathLike, obj: object) -> None:
    """``torch.save(obj)`` to ``path`` atomically, the same object always to the same bytes.

    torch names the archive inside the file after the path it is given; saved by its temporary name, every save of
    the same object would differ (and so would a digest of it). Given a file object, torch calls it "archive".
    """
    import torch  # here, so that modules writing other files do not import torch

    def write(tmp: str) -> None:
        with open(tmp, "wb") as stream:
            torch.save(obj, stream)

    atomic_write(path, write)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
