"""The network (DESIGN section 6): a ResNet encoder regressing the camera and MANO parameters, decoded by the hand.

Inputs. ``images`` are RGB crops (B, 3, H, W), uint8 or float in [0, 255] (normally the 320x320 crops of the packed
data); with ``inputs="rgb+2d"`` also ``heatmaps`` (B, 21, h, w), uint8 0-255 (or float in [0, 255]). The model
normalises them itself: RGB with the ImageNet mean and std (after /255), heatmaps by /255; each is resized to
``input_size`` x ``input_size`` (bilinear) and stacked as 3 or 24 channels. Callers feed raw crops, any memory
format (channels_last included).

Parameter vector (B, P), P = 16 + num_pca, the layout of the packed ``params`` (:class:`ParamLayout`):
``[s, tx, ty, rotation (3), pose PCA (num_pca), betas (10)]``. The weak-perspective camera ``[s, tx, ty]`` maps
metres to crop pixels of the 320 crop: ``u = s*X + tx``, ``v = s*Y + ty``; ``rotation`` is the global axis-angle
about the wrist; pose and betas are the MANO PCA and shape coefficients (``flat_hand_mean=False``).

Head. ``params = mean + scale * fc(features)`` with ``fc`` initialised to zero, so the untrained network predicts
exactly ``mean``: the mean hand (zero pose and shape) seen palm-facing the camera with the fingers up, its projected
vertex box of side 320/2.2 centred in the crop (:func:`mean_hand_params`). The camera scale is ``s = mean_s *
exp(SCALE_STEP * fc_s)`` instead, the same to first order but always positive: a negative ``s`` projects the hand
turned 180 degrees about the optical axis onto the same pixels, a mirror solution the 2D and mask losses cannot tell
apart, which training drifted into. ``scale`` puts the fc outputs at order 1 (:func:`head_scale`). A zero fc passes
no gradient to the features: the first step trains the fc only, the backbone gets gradients from the second step on.

Decoder. :class:`~hand3d.hand_layer.HandLayer` (a submodule: the hand model's arrays are buffers of the model and
travel in its state dict) gives vertices and the 21 OpenPose keypoints in metres (camera frame, OpenCV axes); the
camera projects them into the crop. It runs in float32 even under autocast.

No weights are ever downloaded: torchvision ResNets are built with ``weights=None``; ImageNet weights come from a
user's state-dict file (``weights_path``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from hand3d.atomic import atomic_torch_save
from hand3d.camera import project_weak_perspective
from hand3d.h5io import CROP_SIZE
from hand3d.hand_layer import MAX_PCA, NUM_BETAS, HandLayer
from hand3d.network_inputs import INPUTS, reads_heatmaps

__all__ = [
    "BACKBONES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INPUTS",
    "MEAN_BOX_RATIO",
    "HandRegressor",
    "ParamLayout",
    "Prediction",
    "build_backbone",
    "check_checkpoint",
    "find_hand_model",
    "head_scale",
    "load_model",
    "mean_hand_params",
    "palm_facing_rotation",
    "read_checkpoint",
    "read_torch_file",
    "save_model",
    "state_mismatches",
]

BACKBONES = ("resnet18", "resnet34", "resnet50")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MEAN_BOX_RATIO = 2.2  # crop side / the mean hand's projected box side (the middle of synthetic's U(2.0, 2.4))
CROP_CENTRE = (CROP_SIZE - 1) / 2.0  # 159.5: pixel centres are at integers

# Head output scales (see head_scale): the scale in units of the mean scale, the translation in crop pixels.
SCALE_STEP = 0.2
TRANSLATION_STEP = 40.0
ROTATION_STEP = 1.0  # radians
POSE_STEP = 1.0  # PCA coefficients (synthetic draws U(-2, 2))
BETAS_STEP = 1.0


@dataclass(frozen=True)
class ParamLayout:
    """Slices of the parameter vector ``[s, tx, ty, rotation (3), pose (num_pca), betas (10)]``."""

    num_pca: int = 6

    @property
    def scale(self) -> slice:
        return slice(0, 1)

    @property
    def translation(self) -> slice:
        return slice(1, 3)

    @property
    def camera(self) -> slice:
        return slice(0, 3)

    @property
    def rotation(self) -> slice:
        return slice(3, 6)

    @property
    def pose(self) -> slice:
        return slice(6, 6 + self.num_pca)

    @property
    def betas(self) -> slice:
        return slice(6 + self.num_pca, 6 + self.num_pca + NUM_BETAS)

    @property
    def size(self) -> int:
        return 6 + self.num_pca + NUM_BETAS

    GROUPS = ("scale", "translation", "camera", "rotation", "pose", "betas")

    def split(self, params: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of ``params`` (..., size) per group: scale (..., 1), translation (..., 2), camera (..., 3), ..."""
        if params.shape[-1] != self.size:
            raise ValueError(f"expected {self.size} parameters (num_pca={self.num_pca}), got {params.shape[-1]}")
        return {name: params[..., getattr(self, name)] for name in self.GROUPS}

    @classmethod
    def for_size(cls, size: int) -> ParamLayout:
        """The layout of a parameter vector of ``size`` numbers."""
        return cls(num_pca=size - 6 - NUM_BETAS)


@dataclass
class Prediction:
    """The network's output: parameters and the decoded hand.

    ``params`` (B, P) as in :class:`ParamLayout`; ``vertices`` (B, V, 3) and ``keypoints_3d`` (B, 21, 3) in metres
    (camera frame, OpenCV axes, rotated about the wrist; the weak-perspective camera ignores depth);
    ``keypoints_2d`` (B, 21, 2) and ``vertices_2d`` (B, V, 2) in crop pixels.
    """

    params: torch.Tensor
    vertices: torch.Tensor
    keypoints_3d: torch.Tensor
    keypoints_2d: torch.Tensor
    vertices_2d: torch.Tensor

    @property
    def layout(self) -> ParamLayout:
        return ParamLayout.for_size(self.params.shape[-1])

    @property
    def camera(self) -> torch.Tensor:
        """(B, 3) = [s, tx, ty]."""
        return self.params[:, self.layout.camera]


# ---------------------------------------------------------------- backbone


def build_backbone(name: str, in_channels: int, weights_path: str | os.PathLike | None = None) -> tuple[nn.Module, int]:
    """A torchvision ResNet (``weights=None``) without its fc (Identity): returns (module, feature_dim).

    The module maps (B, in_channels, H, W) to (B, feature_dim) pooled features. ``weights_path``: a user's
    torchvision-style ImageNet state dict (``fc.*`` keys ignored) loaded with ``weights_only=True``. With
    ``in_channels`` > 3 the first conv gets extra input channels initialised to zero after the RGB filters (the
    loaded ones, if any), so the extra inputs (heatmaps) change nothing until training moves those filters.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {BACKBONES}")
    if in_channels < 3:
        raise ValueError(f"the first conv needs at least the 3 RGB channels, got in_channels={in_channels}")
    net = getattr(torchvision.models, name)(weights=None)
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    if weights_path is not None:
        _load_backbone_weights(net, name, weights_path)
    if in_channels != 3:
        net.conv1 = _widen_conv(net.conv1, in_channels)
    return net, feature_dim


def _read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: backbone weights file not found")
    state = read_torch_file(path, "cpu", "a state dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict (a dict of tensors), got {type(state).__name__}")
    return state


def _load_backbone_weights(net: nn.Module, name: str, path: str | os.PathLike) -> None:
    """Load a torchvision-style state dict into ``net`` (fc already removed), failing clearly on any mismatch."""
    state = {k: v for k, v in _read_state_dict(path).items() if not k.startswith("fc.")}
    if problems := state_mismatches(net.state_dict(), state):
        raise ValueError(f"{path}: not a torchvision {name} state dict: {problems}")
    net.load_state_dict(state, strict=False)


def state_mismatches(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> str | None:
    """What keeps ``state`` from loading into a module whose state dict is ``expected``, for an error message;
    None when it fits."""
    # BatchNorm fills a missing num_batches_tracked itself (older torchvision checkpoints lack it).
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if not (missing or unexpected or wrong):
        return None
    return f"missing keys {_head(missing)}, unexpected keys {_head(unexpected)}, shape mismatches {_head(wrong)}"


def _head(items: list[str], n: int = 8) -> str:
    """At most ``n`` items of a list, for an error message."""
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return f"{items[:n]}{more}"


def _widen_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A copy of ``conv`` taking ``in_channels`` inputs: the old filters first, zeros for the new channels."""
    wide = nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        wide.weight.zero_()
        wide.weight[:, : conv.in_channels] = conv.weight
        if conv.bias is not None:
            wide.bias.copy_(conv.bias)
    return wide


# ---------------------------------------------------------------- the mean hand


def palm_facing_rotation(keypoints: np.ndarray) -> np.ndarray:
    """The axis-angle (3,) turning a right hand's rest keypoints (21, 3) palm-facing the camera, fingers up.

    Fingers direction ``f``: wrist -> mean of the four finger MCPs (5, 9, 13, 17); palm normal ``n``:
    ``(index MCP - wrist) x (little MCP - wrist)`` (the palm side for a right hand), made orthogonal to ``f``. The
    rotation maps ``f`` to image up (0, -1, 0) and ``n`` to the camera (0, 0, -1) in OpenCV axes (so the thumb ends on
    the image right).
    """
    from scipy.spatial.transform import Rotation

    k = np.asarray(keypoints, dtype=np.float64)
    f = k[[5, 9, 13, 17]].mean(axis=0) - k[0]
    f /= np.linalg.norm(f)
    n = np.cross(k[5] - k[0], k[17] - k[0])
    n -= n.dot(f) * f
    n /= np.linalg.norm(n)
    source = np.column_stack([f, n, np.cross(f, n)])
    up, towards_camera = np.array([0.0, -1.0, 0.0]), np.array([0.0, 0.0, -1.0])
    target = np.column_stack([up, towards_camera, np.cross(up, towards_camera)])
    return Rotation.from_matrix(target @ source.T).as_rotvec()


@torch.no_grad()
def mean_hand_params(hand: HandLayer, box_ratio: float = MEAN_BOX_RATIO, crop: int = CROP_SIZE) -> torch.Tensor:
    """The parameter vector (P,) of "a sensible hand at the crop centre".

    Zero pose and betas; rotation :func:`palm_facing_rotation` of the rest keypoints; ``s`` makes the projected
    vertex box side ``crop / box_ratio``; ``tx, ty`` put the box centre at the crop centre ((crop - 1) / 2).
    """
    layout = ParamLayout(hand.num_pca)
    rotation = palm_facing_rotation(hand.rest().keypoints[0].double().cpu().numpy())
    params = torch.zeros(layout.size, dtype=torch.float64)
    params[layout.rotation] = torch.from_numpy(rotation)
    zeros = hand.mano.v_template.new_zeros
    rotvec = params[None, layout.rotation].to(hand.mano.v_template)
    rotated = hand(rotvec, zeros(1, hand.num_pca), zeros(1, NUM_BETAS))
    xy = rotated.vertices[0, :, :2].double().cpu()
    lo, hi = xy.min(dim=0).values, xy.max(dim=0).values
    scale = crop / box_ratio / (hi - lo).max()
    params[layout.scale] = scale
    params[layout.translation] = (crop - 1) / 2.0 - scale * (lo + hi) / 2
    return params.float()


def head_scale(layout: ParamLayout, mean_scale: float) -> torch.Tensor:
    """Per-slot output scale (P,): fc outputs of order 1 move each parameter by a sensible step.

    s: ``SCALE_STEP * mean_scale`` (20 % of the mean hand's size); tx, ty: ``TRANSLATION_STEP`` = 40 crop pixels;
    rotation: 1 radian; pose: 1 PCA coefficient (synthetic poses are U(-2, 2)); betas: 1.
    """
    scale = torch.empty(layout.size)
    scale[layout.scale] = SCALE_STEP * mean_scale
    scale[layout.translation] = TRANSLATION_STEP
    scale[layout.rotation] = ROTATION_STEP
    scale[layout.pose] = POSE_STEP
    scale[layout.betas] = BETAS_STEP
    return scale


# ---------------------------------------------------------------- the regressor


class HandRegressor(nn.Module):
    """ResNet encoder -> ``mean + scale * fc(features)`` -> hand layer and weak-perspective projection.

    ``hand_model``: the MANO-format npz; ``backbone``: resnet18 | resnet34 | resnet50; ``inputs``: "rgb" or
    "rgb+2d" (RGB + 21 keypoint heatmaps); ``input_size``: the square network input (crops are resized to it);
    ``weights_path``: optional ImageNet state dict for the backbone (see :func:`build_backbone`).
    """

    def __init__(
        self,
        hand_model: str | os.PathLike,
        backbone: str = "resnet34",
        inputs: str = "rgb",
        input_size: int = 256,
        num_pca: int = 6,
        weights_path: str | os.PathLike | None = None,
    ):
        super().__init__()
        if inputs not in INPUTS:
            raise ValueError(f"unknown inputs {inputs!r}; choose one of {sorted(INPUTS)}")
        self.config = {
            "hand_model": str(hand_model),
            "backbone": backbone,
            "inputs": inputs,
            "input_size": int(input_size),
            "num_pca": int(num_pca),
        }
        self.meta: dict = {}  # how a loaded model was trained (save_model's meta): the heatmaps' sigma, say
        self.layout = ParamLayout(num_pca)
        self.backbone, feature_dim = build_backbone(backbone, INPUTS[inputs], weights_path)
        self.head = nn.Linear(feature_dim, self.layout.size)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.hand = HandLayer(hand_model, num_pca=num_pca)
        mean = mean_hand_params(self.hand)
        self.register_buffer("mean", mean)
        self.register_buffer("scale", head_scale(self.layout, float(mean[0])))
        self.register_buffer("rgb_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("rgb_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255, persistent=False)

    @property
    def uses_heatmaps(self) -> bool:
        return reads_heatmaps(self.config["inputs"])

    def model_config(self) -> dict:
        """The keyword arguments that rebuild this model (JSON-able); the weights live in the state dict."""
        return dict(self.config)

    def prepare(self, images: torch.Tensor, heatmaps: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised network input (B, 3 or 24, input_size, input_size) from raw crops (and heatmaps)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W) RGB in [0, 255], got shape {tuple(images.shape)}")
        if self.uses_heatmaps != (heatmaps is not None):
            need = "needs" if self.uses_heatmaps else "takes no"
            raise ValueError(f"this model (inputs={self.config['inputs']!r}) {need} heatmaps")
        x = (self._resize(images) - self.rgb_mean) / self.rgb_std
        if heatmaps is not None:
            if heatmaps.ndim != 4 or heatmaps.shape[:2] != (images.shape[0], 21):
                raise ValueError(f"heatmaps must be (B, 21, h, w), got shape {tuple(heatmaps.shape)}")
            x = torch.cat([x, self._resize(heatmaps) / 255.0], dim=1)
        return x

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.rgb_mean.dtype)
        size = self.config["input_size"]
        if x.shape[-2:] == (size, size):
            return x
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)

    def regress(self, images: torch.Tensor, heatmaps: torch.Tensor | None = None) -> torch.Tensor:
        """The parameter vector (B, P) in float32."""
        out = self.head(self.backbone(self.prepare(images, heatmaps))).float()
        params = self.mean + self.scale * out
        # s = mean_s * exp(SCALE_STEP * out_s): the linear map above to first order, but always positive
        s = self.mean[self.layout.scale] * torch.exp(SCALE_STEP * out[:, self.layout.scale])
        return torch.cat([s, params[:, 1:]], dim=1)

    def decode(self, params: torch.Tensor) -> Prediction:
        """Hand layer and projection of a parameter vector (B, P), in float32 (autocast off)."""
        with torch.autocast(params.device.type, enabled=False):
            params = params.float()
            parts = self.layout.split(params)
            out = self.hand(parts["rotation"], parts["pose"], parts["betas"])
            camera = parts["camera"]
            return Prediction(
                params=params,
                vertices=out.vertices,
                keypoints_3d=out.keypoints,
                keypoints_2d=project_weak_perspective(out.keypoints, camera),
                vertices_2d=project_weak_perspective(out.vertices, camera),
            )

    def forward(self, images: torch.Tensor, heatmaps: torch.Tensor | None = None) -> Prediction:
        """images (B, 3, H, W) uint8 or float in [0, 255]; heatmaps (B, 21, h, w) 0-255 for "rgb+2d"."""
        return self.decode(self.regress(images, heatmaps))


# ---------------------------------------------------------------- checkpoints


def save_model(path: str | os.PathLike, model: nn.Module, meta: dict | None = None) -> None:
    """Write ``{"config": model_config(), "state_dict": ..., "meta": meta}`` atomically (unwraps DDP's ``.module``).

    ``meta``: JSON-like facts about how the weights were made (stage, steps, ...), loadable with weights_only.
    """
    model = getattr(model, "module", model)
    checkpoint = {"config": model.model_config(), "state_dict": model.state_dict(), "meta": dict(meta or {})}
    atomic_torch_save(path, checkpoint)


def find_hand_model(model_path: str | os.PathLike, stored: str) -> Path:
    """The hand model file a checkpoint was trained with.

    ``stored`` is the path recorded in the checkpoint, relative to the directory the workflow ran in. It is tried
    against each folder above the checkpoint, nearest first (``results/models/<run>/model.pt`` sits three levels
    under the workflow directory), then as given: so a results tree that moved with its models still loads, and a
    model read from another workflow directory gets its own tree's hand model, not the current directory's.
    """
    candidates = (
        [] if Path(stored).is_absolute() else [parent / stored for parent in Path(model_path).resolve().parents]
    )
    candidates.append(Path(stored))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{model_path}: its hand model {stored!r} was found neither here nor above the model file; "
        "pass the MANO_RIGHT.npz it was trained with (--hand-model on the command line, hand_model= in Python)"
    )


def read_torch_file(path: str | os.PathLike, map_location: str | torch.device, what: str) -> object:
    """``torch.load(path, weights_only=True)``; a ValueError naming the file as not ``what`` where torch cannot read
    it (truncated, not a torch file, or holding objects weights_only refuses)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several kinds for a file that is not one of its archives
        raise ValueError(f"{path}: not {what} (torch cannot read it: {_load_failure(error)})") from None


def _load_failure(error: Exception) -> str:
    """The first sentence of what torch.load found, less its advice to load with weights_only=False or to allow the
    file's globals: either would run whatever code the file holds."""
    found = str(error).split("WeightsUnpickler error:")[-1].strip()
    return found.split(". ")[0].splitlines()[0] if found else type(error).__name__


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# Each setting a checkpoint's config rebuilds the model with: whether a stored value will do, and what would.
CHECKPOINT_CONFIG = {
    "hand_model": (lambda v: isinstance(v, str), "a path"),
    "backbone": (lambda v: isinstance(v, str) and v in BACKBONES, f"one of {BACKBONES}"),
    "inputs": (lambda v: isinstance(v, str) and v in INPUTS, f"one of {tuple(INPUTS)}"),
    "input_size": (lambda v: _is_int(v) and v > 0, "a positive whole number"),
    "num_pca": (lambda v: _is_int(v) and 1 <= v <= MAX_PCA, f"a whole number from 1 to {MAX_PCA}"),
}


def check_checkpoint(path: str | os.PathLike, checkpoint: object) -> None:
    """A ValueError naming the file and the problem where a loaded checkpoint is not :func:`save_model`'s: a dict
    of a config (the settings :data:`CHECKPOINT_CONFIG` lists), a state dict of tensors and a dict of meta."""
    if problem := _checkpoint_problem(checkpoint):
        raise ValueError(f"{path}: not a hand3d model checkpoint: {problem}")


def _checkpoint_problem(checkpoint: object) -> str | None:
    if not isinstance(checkpoint, dict) or not {"config", "state_dict"} <= checkpoint.keys():
        return "expected a dict with keys 'config' and 'state_dict'"
    config, state, meta = checkpoint["config"], checkpoint["state_dict"], checkpoint.get("meta", {})
    for name, value in (("config", config), ("state_dict", state), ("meta", meta)):
        if not isinstance(value, dict):
            return f"its {name} is a {type(value).__name__}, not a dict"
    if not all(isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()):
        return "its state_dict holds other things than tensors named by strings"
    for key, (fits, expected) in CHECKPOINT_CONFIG.items():
        if key not in config:
            return f"its config lacks {key!r}"
        if not fits(config[key]):
            return f"its config's {key} is {config[key]!r}, expected {expected}"
    return None


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """A :func:`save_model` file's content, loaded with ``weights_only=True``; a clear error naming the file when
    it is missing, unreadable (truncated, not a torch file) or not a hand3d model (:func:`check_checkpoint`)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    checkpoint = read_torch_file(path, map_location, "a hand3d model checkpoint")
    check_checkpoint(path, checkpoint)
    return checkpoint


def load_model(
    path: str | os.PathLike,
    hand_model: str | os.PathLike | None = None,
    map_location: str | torch.device = "cpu",
) -> HandRegressor:
    """Rebuild a :class:`HandRegressor` from a :func:`save_model` file (``weights_only=True``), in eval mode.

    ``hand_model`` replaces the stored hand model path; it must be the same model. Without it the stored path is
    found as :func:`find_hand_model` says (a results tree that moved with its models still loads).
    """
    checkpoint = read_checkpoint(path, map_location)
    config = dict(checkpoint["config"])
    config["hand_model"] = str(hand_model or find_hand_model(path, config["hand_model"]))
    try:
        model = HandRegressor(**config)
    except TypeError as error:  # a setting this version of hand3d does not know
        raise ValueError(f"{path}: saved by another version of hand3d ({error})") from error
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise ValueError(f"{path}: the weights do not fit the model {config}: {error}") from error
    model.meta = dict(checkpoint.get("meta", {}))
    return model.to(map_location).eval()
