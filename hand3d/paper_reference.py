"""The paper's published results, to compare ours against.

PCK curves: the authors' released curve data (Boukhayma, de Bem, Torr, CVPR 2019; github.com/boukhayma/3dhand,
``PCK/``, CC BY-NC 4.0), shipped in ``hand3d/data/paper_pck/`` (see its README). FreiHAND figures for this method:
the FreiHAND paper (Zimmermann et al., ICCV 2019), which evaluated it on its benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np

__all__ = ["CITATION", "FREIHAND", "PaperCurve", "paper_curve"]

CITATION = "Boukhayma et al., CVPR 2019 (released PCK curve)"

# Our dataset name -> (the paper's curve name, threshold unit).
CURVES = {"mpii_nzsl": ("mpii+nzsl", "px"), "stb": ("stereo", "mm")}
VARIANTS = {"rgb": "rgb", "rgb+2d": "rgb+2d"}  # model inputs -> the paper's variant

# Boukhayma et al. on FreiHAND's evaluation set, as reported by the FreiHAND paper (mm).
FREIHAND = {"pa_mpjpe_mm": 35.0, "pa_mpvpe_mm": 13.2, "f_at_5mm": 0.427, "f_at_15mm": 0.895}


@dataclass(frozen=True)
class PaperCurve:
    thresholds: np.ndarray  # 0, 1, 2, ... in ``unit``
    pck: np.ndarray
    unit: str
    label: str


def paper_curve(dataset: str, inputs: str) -> PaperCurve | None:
    """The paper's PCK curve for our ``dataset`` and a model's ``inputs`` ("rgb" / "rgb+2d"), None if it has none."""
    if dataset not in CURVES or inputs not in VARIANTS:
        return None
    name, unit = CURVES[dataset]
    text = resources.files("hand3d").joinpath(f"data/paper_pck/{name}__{VARIANTS[inputs]}.txt").read_text()
    pck = np.array([float(line) for line in text.split()])
    return PaperCurve(np.arange(len(pck), dtype=np.float64), pck, unit, f"{CITATION}, {inputs.upper()}")
