"""What ``torch.compile`` made of a run's compiled pieces: graphs, graph breaks with their reasons, and the graphs
that CUDA graphs (``mode="reduce-overhead"``) skipped.

Read from Dynamo's process-wide counters, before and after. A graph break splits a compiled step into graphs that
the host launches one by one, checking guards and running eager code in between; on a GPU the step then waits on the
host. Whether code breaks depends on the torch release: torch 2.11 split the training objective into 9 graphs where
torch 2.14 made one (:class:`hand3d.hand_layer.KinematicTree`). So training warns when its step is split, and
``hand3d bench train`` prints the counts beside the rates.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from torch._dynamo.utils import counters

__all__ = ["CompileCounts"]


@dataclass(frozen=True)
class CompileCounts:
    graphs: int = 0
    breaks: Counter[str] = field(default_factory=Counter)  # reason, shortened -> times
    cudagraph_skips: int = 0  # compiled graphs run kernel by kernel though CUDA graphs were asked for

    @classmethod
    def now(cls) -> CompileCounts:
        """The counts so far in this process."""
        breaks = Counter()
        for reason, times in counters["graph_break"].items():
            breaks[_shortened(reason)] += times
        return cls(counters["stats"]["unique_graphs"], breaks, counters["inductor"]["cudagraph_skips"])

    def __sub__(self, earlier: CompileCounts) -> CompileCounts:
        skips = self.cudagraph_skips - earlier.cudagraph_skips
        return CompileCounts(self.graphs - earlier.graphs, self.breaks - earlier.breaks, skips)

    @property
    def break_count(self) -> int:
        return self.breaks.total()

    def summary(self, cuda_graphs: bool = False) -> str:
        """e.g. ``2 graphs, 0 breaks``; with ``cuda_graphs``, e.g. ``2 graphs, 0 breaks, 0 without CUDA graph``."""
        text = f"{self.graphs} graph{'s' * (self.graphs != 1)}, {self.break_count} break{'s' * (self.break_count != 1)}"
        return text + (f", {self.cudagraph_skips} without CUDA graph" if cuda_graphs else "")

    def reasons(self, limit: int = 3) -> str:
        """The most frequent break reasons, one per line."""
        return "\n".join(f"  {times}x {reason}" for reason, times in self.breaks.most_common(limit))


def _shortened(reason: str, width: int = 240) -> str:
    """A reason's first line and, where Dynamo gives one, its developer context (what it could not trace)."""
    lines = [line.strip() for line in reason.strip().splitlines() if line.strip()] or ["(no reason given)"]
    context = [line for line in lines if line.startswith("Developer debug context:")]
    text = lines[0] + (f" ({context[0].removeprefix('Developer debug context:').strip()})" if context else "")
    return text if len(text) <= width else text[: width - 3] + "..."
