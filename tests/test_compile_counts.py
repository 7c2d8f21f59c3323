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
        _warn_if_split(CompileCounts.now() - before, cuda_graphs=False)
    assert "split the compiled training step into 2 graphs, 1 break" in caplog.text
    assert "torch._dynamo.graph_break()" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hand3d.train"):
        _warn_if_split(CompileCounts.now() - CompileCounts.now(), cuda_graphs=True)
    assert not caplog.text


def test_counts_the_graphs_run_without_the_cuda_graph_asked_for(caplog):
    """On the CPU Inductor makes no CUDA graph: asked for one (``reduce-overhead``), it counts the graph as skipped,
    and a training step with CUDA graphs on a GPU warns of such a graph."""
    torch._dynamo.reset()
    before = CompileCounts.now()
    torch.compile(_whole)(torch.zeros(3))
    plain = CompileCounts.now() - before
    torch._dynamo.reset()
    torch.compile(_whole, mode="reduce-overhead")(torch.zeros(3))
    graphed = CompileCounts.now() - before - plain
    assert (plain.cudagraph_skips, graphed.cudagraph_skips) == (0, 1)
    assert graphed.summary(cuda_graphs=True) == "1 graph, 0 breaks, 1 without CUDA graph"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hand3d.train"):
        _warn_if_split(graphed, cuda_graphs=False)
        assert not _training_warnings(caplog)
        _warn_if_split(graphed, cuda_graphs=True)
    (warning,) = _training_warnings(caplog)
    assert "made no CUDA graph of 1 of the step's compiled graphs" in warning


def _training_warnings(caplog) -> list[str]:
    """What training warned (compiling logs torch's own records too)."""
    return [r.getMessage() for r in caplog.records if r.name == "hand3d.train"]
