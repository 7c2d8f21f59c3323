"""Write files so that a killed job never leaves a half-written file under the final name."""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

# A temporary file is named ``.<final name>~<host>~<pid>~<random><suffix>``: a writer killed by SIGKILL (or a power
# loss) runs no cleanup, and the name says which process on which machine made it, so a later run can tell a dead
# writer's leftover (:func:`sweep_stale_temps`) from a file another process is writing now.
_TEMP = re.compile(r"\..+~(?P<host>[A-Za-z0-9.-]+)~(?P<pid>[0-9]+)~[A-Za-z0-9_]+(?:\.[A-Za-z0-9]+)?")


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> None:
    """Call write(tmp_path) on a temporary file beside `path`, then rename it over `path`.

    A killed job leaves no half-written file under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        durable_replace(tmp, path)
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


def durable_replace(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename the finished ``tmp`` over ``path``, its bytes on disk first and the rename after.

    Without the first fsync, a machine that loses power (or a node that fails) soon after can keep the rename but
    not the data: a file under its final name, empty or cut short, that Snakemake takes as complete.
    """
    _fsync(tmp)
    os.replace(tmp, path)
    _fsync(Path(path).parent)


def _fsync(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_prefix(path: str | os.PathLike) -> str:
    """The start of a temporary name for ``path`` by this process: ``.<name>~<host>~<pid>~``."""
    return f".{Path(path).name}~{_host()}~{os.getpid()}~"


def fresh_temp(path: str | os.PathLike) -> Path:
    """A temporary path beside ``path``, unique to this call, for a writer that renames it over ``path`` when done
    (:func:`durable_replace`); first, what dead writers left in that folder goes (:func:`sweep_stale_temps`)."""
    path = Path(path)
    sweep_stale_temps(path.parent)
    return path.with_name(f"{temp_prefix(path)}{uuid.uuid4().hex[:12]}.tmp")


def sweep_stale_temps(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Delete the temporary files in ``folder`` (and below it, if ``recursive``) whose writer, a process on this
    machine, is gone: what a job killed mid-write left beside its outputs. Returns the deleted paths.

    A temporary made on another machine (a shared file system) is left alone: whether its writer lives cannot be
    told from here.
    """
    removed = []
    for tmp, match in _temps(Path(folder), recursive):
        if match["host"] != _host() or _alive(int(match["pid"])):
            continue
        try:
            tmp.unlink()
        except FileNotFoundError:  # swept by another process meanwhile
            continue
        removed.append(tmp)
    return removed


def _temps(folder: Path, recursive: bool) -> Iterator[tuple[Path, re.Match]]:
    """(path, its name parsed) of each temporary file in ``folder``."""
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            if recursive:
                yield from _temps(Path(entry.path), recursive)
        elif match := _TEMP.fullmatch(entry.name):
            yield Path(entry.path), match


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        pass
    return True


def _host() -> str:
    """This machine's name as it goes in a temporary name (no ``~``: the field separator)."""
    return re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "host"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
