import logging

import torch

from hand3d.compile_counts import CompileCounts
from hand3d.train import _warn_if_split


def _split(x: torch.Tensor) -> torch.Tensor:
    x = x + 1
    torch._dynamo.graph_break()
    return x * 2


def _whole(x: torch.Tensor) -> torch.Tensor:
    return (x + 1) * 2


def test_counts_the_graphs_and_breaks_of_what_was_compiled_in_between():
    torch._dynamo.reset()  # nothing cached from another test
    before = CompileCounts.now()
    torch.compile(_whole)(torch.zeros(3))
    whole = CompileCounts.now() - before
    torch.compile(_split)(torch.zeros(3))
    split = CompileCounts.now() - before - whole
    assert (whole.graphs, whole.break_count, whole.summary()) == (1, 0, "1 graph, 0 breaks")
    assert (split.graphs, split.break_count, split.summary()) == (2, 1, "2 graphs, 1 break")
    assert "torch._dynamo.graph_break()" in split.reasons()


def test_training_warns_with_the_reasons_when_its_compiled_step_is_split(caplog):
    torch._dynamo.reset()
    before = CompileCounts.now()
    torch.compile(_split)(torch.ones(2))
    with caplog.at_level(logging.WARNING, logger="hand3d.train"):
        _warn_if_split(CompileCounts.now() - before)
    assert "split the compiled training step into 2 graphs, 1 break" in caplog.text
    assert "torch._dynamo.graph_break()" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hand3d.train"):
        _warn_if_split(CompileCounts.now() - CompileCounts.now())
    assert not caplog.text
