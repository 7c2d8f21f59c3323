"""hand3d: 3D hand shape and pose from a single RGB image.

After Boukhayma, de Bem and Torr, *3D Hand Shape and Pose from Images in the Wild*, CVPR 2019 (arXiv 1902.03451).
This module stays light (no torch import): Snakemake imports parts of the package at parse time.
"""

__version__ = "0.1.0"
