"""Finding the operations that make the host wait for the device, on any device.

On CUDA the training loop is fast only if the Python thread runs ahead of the GPU, queueing kernels; any operation
whose result the host must read (``.item()``, ``bool(t)``, indexing a Python list with a tensor, an output whose
shape depends on the data, a copy to the CPU) stops it until the GPU has caught up, and so does a tensor made from
Python data (``torch.tensor``, ``new_tensor``, indexing with a tuple of ints): it is copied from pageable memory,
which PyTorch waits for. Those operations are the same whatever the device, so :class:`HostSyncs` records them on
the CPU too, where the tests run: a step with none recorded here has none on CUDA. (``.tolist()`` and ``.numpy()``
bypass the dispatcher on the CPU; on CUDA they copy to the CPU, which is recorded.)
``torch.cuda.set_sync_debug_mode`` tells the same on a GPU only.
"""

from __future__ import annotations

import traceback
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["HostSyncs", "describe"]

_SKIPPED = (str(Path(torch.__file__).parent), __file__)
_HOST_READS = {
    "aten._local_scalar_dense",  # .item(), float(t), bool(t), list[t]
    "aten.nonzero",  # output shape depends on the data
    "aten.masked_select",
    "aten._unique2",
    "aten.unique_dim",
    "aten.unique_consecutive",
    "aten.equal",
    # a tensor made from Python data (torch.tensor, new_tensor): on a GPU, a copy from pageable memory, and PyTorch
    # waits for the stream before such a copy returns
    "aten.lift_fresh",
}


class HostSyncs(TorchDispatchMode):
    """Within ``with HostSyncs() as syncs:``, ``syncs.counts`` counts the host-reading operations by what they are
    and where they were called from (the innermost frames outside torch)."""

    def __init__(self):
        super().__init__()
        self.counts: Counter[tuple[str, str]] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        reason = _host_read(func, args, kwargs)
        if reason is not None:
            self.counts[reason, _caller()] += 1
        return func(*args, **kwargs)

    def __len__(self) -> int:
        return self.counts.total()


def describe(counts: Counter[tuple[str, str]]) -> str:
    """``counts`` (as in :attr:`HostSyncs.counts`) as text, one operation and call site after another."""
    return "\n".join(f"{reason} x{count} at:\n{caller}" for (reason, caller), count in counts.items())


def _caller(depth: int = 4) -> str:
    """The innermost ``depth`` frames outside torch and this module."""
    frames = [f for f in traceback.extract_stack() if not f.filename.startswith(_SKIPPED)]
    return "".join(traceback.format_list(frames[-depth:]))


def _host_read(func, args, kwargs) -> str | None:
    name = str(func.overloadpacket)
    if name in _HOST_READS:
        return name
    if name in ("aten.index", "aten.index_put", "aten.index_put_") and _has_bool_index(args):
        return f"{name} with a boolean mask"
    if name in ("aten._to_copy", "aten.copy_") and _to_cpu(name, args, kwargs):
        return f"{name} to the CPU"
    return None


def _has_bool_index(args) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices)


def _to_cpu(name: str, args, kwargs) -> bool:
    """A copy from a device tensor into CPU memory."""
    if name == "aten.copy_":
        destination, source = args[0], args[1]
        return source.device.type != "cpu" and destination.device.type == "cpu"
    device = kwargs.get("device")
    return args[0].device.type != "cpu" and device is not None and torch.device(device).type == "cpu"
