"""The network's input kinds: how many channels each gives the first convolution, and which read keypoint heatmaps.

Free of torch, so that the workflow asks it while it builds the DAG (which runs pass the heatmaps' sigma).
"""

from __future__ import annotations

__all__ = ["INPUTS", "reads_heatmaps"]

INPUTS = {"rgb": 3, "rgb+2d": 3 + 21}  # input kind -> channels: RGB, then one heatmap per keypoint


def reads_heatmaps(inputs: str) -> bool:
    """Whether a model of this input kind takes the 21 keypoint heatmaps beside the image."""
    return inputs == "rgb+2d"
