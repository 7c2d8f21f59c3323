"""The differentiable hand: (global rotation, PCA pose, betas) -> mesh vertices and 21 keypoints, via smplx's MANO.

smplx's `MANO.forward` returns MANO's 16 joints only; the five fingertips are vertices (`tip_vertex_ids` of the
model file), appended in the order thumb, index, middle, ring, little and gathered into the canonical OpenPose-21
order of `hand3d.keypoints`. Units are metres in the model's frame; batched; runs on CPU or CUDA.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass

import numpy as np
import smplx
import torch
from smplx.utils import Struct

from hand3d.hand_model import load_hand_model_arrays
from hand3d.keypoints import MANO_TO_OPENPOSE

NUM_BETAS = 10


@dataclass
class HandOutput:
    vertices: torch.Tensor  # (B, V, 3)
    keypoints: torch.Tensor  # (B, 21, 3), OpenPose order
    joints: torch.Tensor  # (B, 16, 3), MANO order


class KinematicTree:
    """MANO's parent indices as Python ints, standing in for smplx's ``parents`` buffer.

    smplx's kinematic chain indexes a Python list with ``parents[i]``; with a tensor that is a ``.item()`` per joint
    (on CUDA a wait for the GPU), which also splits a compiled graph at every joint (measured: 5 graphs for the hand
    layer, 1 with this). smplx uses ``parents`` only as ``parents.shape[0]``, ``parents[i]`` (an int here) and
    ``joints[:, parents[1:]]``; a slice is given as a tensor on the hand's device (the module's non-persistent
    ``parent_index`` buffer), since a tuple index would be copied to the GPU, and waited for, at every call. The tree
    comes from the hand model file, so it is not part of the state dict.

    A plain object holding a tuple, not a tuple subclass: torch 2.11's compiler cannot trace ``tuple.__getitem__``
    on a subclass and broke the training objective into 9 graphs there (torch 2.14 traces both).
    """

    def __init__(self, parents, owner: torch.nn.Module):
        self.parents = tuple(int(i) for i in parents)
        self.owner = owner

    @property
    def shape(self) -> tuple[int]:
        return (len(self.parents),)

    def __len__(self) -> int:
        return len(self.parents)

    def __iter__(self):
        return iter(self.parents)

    def __getitem__(self, key):
        if isinstance(key, slice):
            return self.owner.parent_index[key]
        return self.parents[key]

    @classmethod
    def of(cls, mano: torch.nn.Module) -> KinematicTree:
        """Take ``mano``'s ``parents`` buffer out of the state dict and return it as a tree."""
        parents = mano._buffers.pop("parents")
        mano.register_buffer("parent_index", parents.clone(), persistent=False)
        return cls(parents.tolist(), mano)


MAX_PCA = 44  # pose PCA coefficients the layer takes


class HandLayer(torch.nn.Module):
    """MANO (real or procedural) with PCA pose and `flat_hand_mean=False`, as the paper uses it."""

    def __init__(self, model_path: str | os.PathLike, num_pca: int = 6):
        super().__init__()
        if not 1 <= num_pca <= MAX_PCA:
            # smplx turns PCA off at 45 components and reads the 45 numbers as joint angles instead
            raise ValueError(f"num_pca must be 1 to {MAX_PCA}, got {num_pca} (smplx reads 45 as raw joint angles)")
        arrays = load_hand_model_arrays(model_path)
        self.num_pca = num_pca
        with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a warning that MANO has 10 betas: it does
            self.mano = smplx.MANO(
                str(model_path),
                data_struct=Struct(**arrays),
                use_pca=True,
                num_pca_comps=num_pca,
                flat_hand_mean=False,
                create_global_orient=False,
                create_hand_pose=False,
                create_betas=False,
                create_transl=False,
                create_body_pose=False,  # smplx's SMPL base would add an unused parameter (DDP refuses those)
            )
        self.mano.parents = KinematicTree.of(self.mano)
        self.register_buffer("tip_vertex_ids", torch.as_tensor(arrays["tip_vertex_ids"], dtype=torch.long))
        self.register_buffer("to_openpose", torch.tensor(MANO_TO_OPENPOSE.tolist(), dtype=torch.long))

    @property
    def faces(self) -> np.ndarray:
        return np.asarray(self.mano.faces, dtype=np.int64)

    @property
    def num_vertices(self) -> int:
        return int(self.mano.v_template.shape[0])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # models saved before the tree left the state dict carry it; it is rebuilt from the hand model file
        state_dict.pop(f"{prefix}mano.parents", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, rotation: torch.Tensor, pose: torch.Tensor, betas: torch.Tensor) -> HandOutput:
        """rotation (B, 3) axis-angle about the wrist, pose (B, num_pca) PCA coefficients, betas (B, 10)."""
        out = self.mano(betas=betas, global_orient=rotation, hand_pose=pose)
        tips = out.vertices[:, self.tip_vertex_ids]
        keypoints = torch.cat([out.joints, tips], dim=1)[:, self.to_openpose]
        return HandOutput(vertices=out.vertices, keypoints=keypoints, joints=out.joints)

    def rest(self, batch_size: int = 1) -> HandOutput:
        """The mean hand (zero rotation, pose and shape)."""
        ref = self.mano.v_template
        zeros = ref.new_zeros
        return self(zeros(batch_size, 3), zeros(batch_size, self.num_pca), zeros(batch_size, NUM_BETAS))
