"""Atomic writes: the final name holds either the old file or the whole new one, never a part."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hand3d.atomic import _host, atomic_torch_save, atomic_write, atomic_write_json, sweep_stale_temps


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")

    def half_written(tmp: str) -> None:
        with open(tmp, "w") as stream:
            stream.write("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        atomic_write(path, half_written)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]


def test_json_round_trips_into_a_new_folder_with_the_umask_applied(tmp_path):
    path = tmp_path / "new" / "record.json"
    atomic_write_json(path, {"a": [1, 2.5], "name": "é"}, indent=1)
    assert json.loads(path.read_text(encoding="utf-8")) == {"a": [1, 2.5], "name": "é"}
    assert path.read_text(encoding="utf-8").endswith("}\n")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0600


def test_an_unserialisable_value_writes_nothing(tmp_path):
    with pytest.raises(TypeError, match="not JSON serializable"):
        atomic_write_json(tmp_path / "x.json", {"a": object()})
    assert os.listdir(tmp_path) == []


def test_the_same_object_saves_to_the_same_bytes_whatever_the_path(tmp_path):
    state = {"w": torch.arange(6.0).reshape(2, 3)}
    atomic_torch_save(tmp_path / "a.pt", state)
    atomic_torch_save(tmp_path / "b.pt", state)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert torch.equal(torch.load(tmp_path / "a.pt", weights_only=True)["w"], state["w"])


def _killed_mid_write(folder, name: str) -> None:
    """A process that starts an atomic write of ``folder/name`` and is SIGKILLed inside it (no cleanup runs)."""
    script = (
        "import os, signal, sys\n"
        "from hand3d.atomic import atomic_write\n"
        "def write(tmp):\n"
        "    open(tmp, 'w').write('half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "atomic_write(sys.argv[1], write)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(folder / name)], capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr


def test_a_write_killed_by_sigkill_leaves_a_temporary_that_a_later_sweep_removes(tmp_path):
    (tmp_path / "keep.json").write_text("{}")
    (tmp_path / ".hidden").write_text("a user's file, not a temporary")
    _killed_mid_write(tmp_path, "model.pt")
    _killed_mid_write(tmp_path / "sub", "pck.png")
    [left] = [p for p in tmp_path.iterdir() if p.name.startswith(".model.pt")]
    assert left.suffix == ".pt" and not (tmp_path / "model.pt").exists()
    assert sweep_stale_temps(tmp_path) == [left]  # not below tmp_path unless recursive
    [below] = sweep_stale_temps(tmp_path, recursive=True)
    assert below.parent == tmp_path / "sub" and below.name.startswith(".pck.png~")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "keep.json", "sub"]
    assert list((tmp_path / "sub").iterdir()) == []


def test_a_sweep_keeps_the_temporaries_of_live_writers(tmp_path):
    seen = []

    def write(tmp: str) -> None:
        Path(tmp).write_text("being written")
        seen.append(sweep_stale_temps(tmp_path))  # this process: alive
        seen.append(Path(tmp).exists())

    atomic_write(tmp_path / "out.txt", write)
    other = tmp_path / f".out.txt~{_host()}~1~abcdefgh.txt"  # pid 1 always runs
    elsewhere = tmp_path / ".out.txt~some-other-host~999999999~abcdefgh.txt"  # its writer cannot be seen from here
    other.write_text("x")
    elsewhere.write_text("x")
    assert seen == [[], True]
    assert sweep_stale_temps(tmp_path) == [] and other.exists() and elsewhere.exists()
    assert sweep_stale_temps(tmp_path / "missing") == []
