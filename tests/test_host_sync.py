"""HostSyncs records the operations that would make the host wait for a GPU, and nothing else."""

from __future__ import annotations

import pytest
import torch

from hand3d.host_sync import HostSyncs, describe


@pytest.mark.parametrize(
    ("operation", "recorded"),
    [
        (lambda x: x.sum().item(), "aten._local_scalar_dense"),
        (lambda x: list(range(5))[x.argmax(dim=1)[0]], "aten._local_scalar_dense"),
        (lambda x: bool(x.sum() > 0), "aten._local_scalar_dense"),
        (lambda x: x[x > 0], "aten.index with a boolean mask"),
        (lambda x: torch.nonzero(x), "aten.nonzero"),
        (lambda x: x.unique(), "aten._unique2"),
        (lambda x: x.new_tensor([1.0, 2.0]), "aten.lift_fresh"),
        (lambda x: x[torch.tensor([0, 1])], "aten.lift_fresh"),
    ],
)
def test_records_what_waits_for_the_device(operation, recorded):
    x = torch.randn(2, 5)
    with HostSyncs() as syncs:
        operation(x)
    assert [reason for reason, _ in syncs.counts] == [recorded]
    assert "test_host_sync.py" in describe(syncs.counts)


def test_device_side_work_is_not_recorded():
    x = torch.randn(2, 5, requires_grad=True)
    index = torch.tensor([1, 0])
    with HostSyncs() as syncs:
        y = (x[index] * 2.5).sin().sum() + torch.where(x > 0, x, 0).mean()
        y.backward()
        torch.zeros(3).copy_(torch.ones(3))
    assert len(syncs) == 0, describe(syncs.counts)
