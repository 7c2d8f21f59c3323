"""Atomic writes: the final name holds either the old file or the whole new one, never a part."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch

from hand3d.atomic import atomic_torch_save, atomic_write, atomic_write_json


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
