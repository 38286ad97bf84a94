"""The trainable set of 3D Gaussians: parameters, activations, Adam state, adaptive density control and PLY I/O."""

import copy
import math
import os
from argparse import Namespace
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from plyfile import PlyData, PlyElement
from sklearn.neighbors import NearestNeighbors

from scene.readers.views import BasicPointCloud
from utils.atomic_file import atomic_write
from utils.errors import UserError
from utils.geometry import quaternion_to_rotation_matrix

SH_C0 = 0.28209479177387814


class PlyFormatError(UserError, ValueError):
    """A point-cloud file that cannot be read as a set of Gaussians."""


@dataclass
class GaussianParams:
    """Activated Gaussian parameters, exactly what the rasterizer consumes.

    Training renders from these rather than from the model itself, so that a blur model can hand the renderer
    transformed copies (larger scales, rotated or displaced Gaussians) without touching the stored parameters.
    """

    means: torch.Tensor  # (N, 3)
    scales: torch.Tensor  # (N, 3), exp applied
    rotations: torch.Tensor  # (N, 4), unit quaternions (w, x, y, z)
    opacities: torch.Tensor  # (N, 1), sigmoid applied
    sh_coeffs: torch.Tensor  # (N, (max_degree + 1) ** 2, 3)
    sh_degree: int  # active degree; the rasterizer ignores coefficients above it


def rgb_to_sh(rgb: torch.Tensor) -> torch.Tensor:
    return (rgb - 0.5) / SH_C0


def sh_to_rgb(sh: torch.Tensor) -> torch.Tensor:
    return sh * SH_C0 + 0.5


def inverse_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return torch.log(x / (1 - x))


def sh_coefficient_count(degree: int) -> int:
    return (degree + 1) ** 2


def get_expon_lr_func(lr_init: float, lr_final: float, lr_delay_steps: int = 0, lr_delay_mult: float = 1.0,
                      max_steps: int = 1000000) -> Callable[[int], float]:
    """Learning rate that decays log-linearly from lr_init at step 0 to lr_final at max_steps, then stays there.

    With lr_delay_steps > 0 the rate is additionally scaled by a smooth ramp from lr_delay_mult to 1 over the
    first lr_delay_steps steps.
    """

    def schedule(step: int) -> float:
        if step < 0 or (lr_init == 0.0 and lr_final == 0.0):
            return 0.0
        if lr_delay_steps > 0:
            ramp = np.clip(step / lr_delay_steps, 0.0, 1.0)
            delay_rate = lr_delay_mult + (1.0 - lr_delay_mult) * np.sin(0.5 * np.pi * ramp)
        else:
            delay_rate = 1.0
        t = np.clip(step / max_steps, 0.0, 1.0)
        log_lerp = np.exp(np.log(lr_init) * (1.0 - t) + np.log(lr_final) * t)
        return float(delay_rate * log_lerp)

    return schedule


def as_parameter(tensor: torch.Tensor) -> torch.nn.Parameter:
    return torch.nn.Parameter(tensor.detach().contiguous())


def repeat_rows(tensor: torch.Tensor, times: int) -> torch.Tensor:
    return tensor.repeat(times, *[1] * (tensor.dim() - 1))


def mean_squared_distance_to_neighbours(points: np.ndarray, neighbour_count: int = 3) -> np.ndarray:
    """For each point, the mean squared distance to its nearest other points (3DGS scale initialisation)."""
    if len(points) < 2:
        raise ValueError(f"cannot initialise Gaussian scales from {len(points)} point(s): at least 2 are needed")
    neighbour_count = min(neighbour_count, len(points) - 1)
    # The first neighbour returned for each query is the point itself (or an exact duplicate, also at distance 0).
    search = NearestNeighbors(n_neighbors=neighbour_count + 1).fit(points)
    distances, _ = search.kneighbors(points)
    return np.mean(distances[:, 1:] ** 2, axis=1)


class GaussianModel:
    """Gaussians stored as raw (pre-activation) parameters, optimised with one Adam group per parameter kind."""

    # Optimizer group name -> attribute holding that raw parameter; the group names are the checkpoint keys.
    attribute_of = {
        "xyz": "_xyz",
        "f_dc": "_features_dc",
        "f_rest": "_features_rest",
        "opacity": "_opacity",
        "scaling": "_scaling",
        "rotation": "_rotation",
    }
    param_names = tuple(attribute_of)

    def __init__(self, sh_degree: int, device: torch.device | str = "cpu"):
        self.max_sh_degree = sh_degree
        self.active_sh_degree = 0
        self.device = torch.device(device)
        self.spatial_lr_scale = 1.0
        self.percent_dense = 0.0
        # Both made by training_setup.
        self._optimizer: torch.optim.Adam | None = None
        self._xyz_scheduler: Callable[[int], float] | None = None
        empty = torch.empty(0, device=self.device)
        self._xyz = empty.reshape(0, 3)
        self._features_dc = empty.reshape(0, 1, 3)
        self._features_rest = empty.reshape(0, sh_coefficient_count(sh_degree) - 1, 3)
        self._opacity = empty.reshape(0, 1)
        self._scaling = empty.reshape(0, 3)
        self._rotation = empty.reshape(0, 4)
        self._reset_densification_stats()

    # ---- activated views --------------------------------------------------------------------------------------

    @property
    def num_points(self) -> int:
        return self._xyz.shape[0]

    @property
    def get_xyz(self) -> torch.Tensor:
        return self._xyz

    @property
    def get_scaling(self) -> torch.Tensor:
        return torch.exp(self._scaling)

    @property
    def get_rotation(self) -> torch.Tensor:
        return torch.nn.functional.normalize(self._rotation, dim=-1)

    @property
    def get_opacity(self) -> torch.Tensor:
        return torch.sigmoid(self._opacity)

    @property
    def get_features(self) -> torch.Tensor:
        return torch.cat((self._features_dc, self._features_rest), dim=1)

    @property
    def optimizer(self) -> torch.optim.Adam:
        """The Adam optimizer of every parameter group, one group per kind of parameter."""
        if self._optimizer is None:
            raise RuntimeError("the Gaussians have no optimizer before training_setup()")
        return self._optimizer

    def render_params(self) -> GaussianParams:
        return GaussianParams(
            means=self.get_xyz,
            scales=self.get_scaling,
            rotations=self.get_rotation,
            opacities=self.get_opacity,
            sh_coeffs=self.get_features,
            sh_degree=self.active_sh_degree,
        )

    def oneup_sh_degree(self) -> None:
        self.active_sh_degree = min(self.active_sh_degree + 1, self.max_sh_degree)

    # ---- construction -----------------------------------------------------------------------------------------

    def create_from_pcd(self, point_cloud: BasicPointCloud, spatial_lr_scale: float) -> None:
        """Initialise one Gaussian per SfM point: its colour, isotropic size from the neighbour spacing,
        identity rotation and opacity 0.1."""
        points = np.asarray(point_cloud.points, dtype=np.float64)
        colors = np.asarray(point_cloud.colors, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 3 or colors.shape != points.shape:
            raise ValueError(
                f"point cloud must have points and colors of shape (P, 3); got {points.shape} and {colors.shape}"
            )
        if not (np.isfinite(points).all() and np.isfinite(colors).all()):
            raise ValueError("point cloud contains non-finite coordinates or colours")
        self.spatial_lr_scale = float(spatial_lr_scale)
        count = len(points)
        squared_spacing = np.maximum(mean_squared_distance_to_neighbours(points), 1e-7)

        def as_tensor(array: ArrayLike) -> torch.Tensor:
            return torch.tensor(array, dtype=torch.float32, device=self.device)

        features = torch.zeros(count, sh_coefficient_count(self.max_sh_degree), 3, device=self.device)
        features[:, 0] = rgb_to_sh(as_tensor(colors))
        rotations = torch.zeros(count, 4, device=self.device)
        rotations[:, 0] = 1.0
        self._set_parameters(
            xyz=as_tensor(points),
            f_dc=features[:, :1],
            f_rest=features[:, 1:],
            opacity=inverse_sigmoid(torch.full((count, 1), 0.1, device=self.device)),
            scaling=torch.log(torch.sqrt(as_tensor(squared_spacing)))[:, None].repeat(1, 3),
            rotation=rotations,
        )
        self.active_sh_degree = 0

    def _set_parameters(self, **tensors: torch.Tensor) -> None:
        for name in self.param_names:
            setattr(self, self.attribute_of[name], as_parameter(tensors[name]))
        self._reset_densification_stats()

    def raw_parameter(self, name: str) -> torch.Tensor:
        """The stored (pre-activation) tensor of one parameter group, detached."""
        return getattr(self, self.attribute_of[name]).detach()

    def _reset_densification_stats(self) -> None:
        self.xyz_gradient_accum = torch.zeros(self.num_points, 1, device=self.device)
        self.denom = torch.zeros(self.num_points, 1, device=self.device)
        self.max_radii2D = torch.zeros(self.num_points, device=self.device)

    # ---- optimisation -----------------------------------------------------------------------------------------

    def training_setup(self, opt: Namespace) -> None:
        self.percent_dense = opt.percent_dense
        learning_rates = {
            "xyz": opt.position_lr_init * self.spatial_lr_scale,
            "f_dc": opt.feature_lr,
            "f_rest": opt.feature_lr / 20.0,
            "opacity": opt.opacity_lr,
            "scaling": opt.scaling_lr,
            "rotation": opt.rotation_lr,
        }
        groups = [
            {"params": [getattr(self, self.attribute_of[name])], "lr": learning_rates[name], "name": name}
            for name in self.param_names
        ]
        self._optimizer = torch.optim.Adam(groups, lr=0.0, eps=1e-15, fused=self.device.type == "cuda")
        self._xyz_scheduler = get_expon_lr_func(
            lr_init=opt.position_lr_init * self.spatial_lr_scale,
            lr_final=opt.position_lr_final * self.spatial_lr_scale,
            lr_delay_steps=opt.position_lr_delay_steps,
            lr_delay_mult=opt.position_lr_delay_mult,
            max_steps=opt.position_lr_max_steps or opt.iterations,
        )

    def update_learning_rate(self, iteration: int) -> float:
        if self._xyz_scheduler is None:
            raise RuntimeError("the Gaussians have no learning-rate schedule before training_setup()")
        lr = self._xyz_scheduler(iteration)
        for group in self.optimizer.param_groups:
            if group["name"] == "xyz":
                group["lr"] = lr
        return lr

    def _replace_parameters(self, transform_tensor: Callable[[str, torch.Tensor], torch.Tensor],
                            transform_state: Callable[[str, torch.Tensor], torch.Tensor]) -> None:
        """Swap every parameter for transform_tensor(name, old) and carry its Adam moments through transform_state.

        The optimizer keys its state by parameter object, so each new parameter takes over the old one's state.
        """
        for group in self.optimizer.param_groups:
            name = group["name"]
            old = group["params"][0]
            new = as_parameter(transform_tensor(name, old.detach()))
            state = self.optimizer.state.pop(old, None)
            if state is not None:
                for key in ("exp_avg", "exp_avg_sq"):
                    state[key] = transform_state(name, state[key]).contiguous()
                self.optimizer.state[new] = state
            group["params"][0] = new
            setattr(self, self.attribute_of[name], new)

    def _append_points(self, new_tensors: dict[str, torch.Tensor]) -> None:
        """Add Gaussians (raw parameters keyed by group name); their Adam moments start at zero."""
        self._replace_parameters(
            lambda name, old: torch.cat((old, new_tensors[name])),
            lambda name, moment: torch.cat((moment, torch.zeros_like(new_tensors[name]))),
        )
        added = len(new_tensors["xyz"])
        self.xyz_gradient_accum = torch.cat((self.xyz_gradient_accum, self.xyz_gradient_accum.new_zeros(added, 1)))
        self.denom = torch.cat((self.denom, self.denom.new_zeros(added, 1)))
        self.max_radii2D = torch.cat((self.max_radii2D, self.max_radii2D.new_zeros(added)))

    def prune_points(self, mask: torch.Tensor) -> None:
        keep = ~mask
        self._replace_parameters(lambda name, old: old[keep], lambda name, moment: moment[keep])
        self.xyz_gradient_accum = self.xyz_gradient_accum[keep]
        self.denom = self.denom[keep]
        self.max_radii2D = self.max_radii2D[keep]

    def reset_opacity(self) -> None:
        """Clamp every opacity to at most 0.01 and forget its Adam moments (3DGS opacity reset)."""
        ceiling = inverse_sigmoid(torch.tensor(0.01, device=self.device))

        def transform_tensor(name: str, old: torch.Tensor) -> torch.Tensor:
            return torch.minimum(old, ceiling) if name == "opacity" else old

        def transform_state(name: str, moment: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(moment) if name == "opacity" else moment

        self._replace_parameters(transform_tensor, transform_state)

    # ---- adaptive density control -----------------------------------------------------------------------------

    def add_densification_stats(self, means2d_grad: torch.Tensor, radii: torch.Tensor, width: int,
                                height: int) -> None:
        """Accumulate the screen-space position gradient of the Gaussians visible in one render.

        The rasterizer reports the gradient per pixel; scaling by half the image size expresses it per NDC unit,
        the unit in which the 3DGS densification thresholds (e.g. 2e-4) are defined. Masks rather than indexing by
        them: the shapes stay fixed, so a GPU is never waited for.
        """
        visible = (radii > 0)[:, None]
        pixels_per_ndc = means2d_grad.new_tensor([width / 2.0, height / 2.0])
        ndc_grad_norm = torch.norm(means2d_grad * pixels_per_ndc, dim=-1, keepdim=True)
        self.xyz_gradient_accum += torch.where(visible, ndc_grad_norm, 0.0)
        self.denom += visible
        # A hidden Gaussian's radius is 0, which leaves its maximum as it is.
        torch.maximum(self.max_radii2D, radii.to(self.max_radii2D), out=self.max_radii2D)

    def densify_and_clone(self, grads: torch.Tensor, grad_threshold: float, scene_extent: float) -> None:
        """Duplicate small Gaussians with large view-space gradient: under-reconstructed regions."""
        selected = torch.norm(grads, dim=-1) >= grad_threshold
        selected &= self.get_scaling.max(dim=1).values <= self.percent_dense * scene_extent
        self._append_points({name: self.raw_parameter(name)[selected] for name in self.param_names})

    def densify_and_split(self, grads: torch.Tensor, grad_threshold: float, scene_extent: float,
                          pieces: int = 2) -> None:
        """Replace large Gaussians with large view-space gradient by `pieces` smaller ones sampled inside them:
        over-reconstructed regions."""
        padded_grads = torch.zeros(self.num_points, device=self.device)
        padded_grads[: grads.shape[0]] = torch.norm(grads, dim=-1)
        selected = padded_grads >= grad_threshold
        selected &= self.get_scaling.max(dim=1).values > self.percent_dense * scene_extent

        stds = self.get_scaling[selected].repeat(pieces, 1)
        offsets = torch.normal(mean=torch.zeros_like(stds), std=stds)
        rotations = quaternion_to_rotation_matrix(self.get_rotation[selected]).repeat(pieces, 1, 1)
        new_tensors = {name: repeat_rows(self.raw_parameter(name)[selected], pieces) for name in self.param_names}
        new_tensors["xyz"] = new_tensors["xyz"] + (rotations @ offsets[..., None]).squeeze(-1)
        new_tensors["scaling"] = torch.log(stds / (0.8 * pieces))
        self._append_points(new_tensors)

        children = torch.zeros(pieces * int(selected.sum()), dtype=torch.bool, device=self.device)
        self.prune_points(torch.cat((selected, children)))

    def densify_and_prune(self, grad_threshold: float, min_opacity: float, scene_extent: float,
                          max_screen_size: float | None = None) -> None:
        """One round of adaptive density control: clone, split, then prune transparent (and, with
        max_screen_size, oversized) Gaussians; the accumulated statistics restart afterwards."""
        grads = self.xyz_gradient_accum / self.denom
        grads[grads.isnan()] = 0.0
        self.densify_and_clone(grads, grad_threshold, scene_extent)
        self.densify_and_split(grads, grad_threshold, scene_extent)

        prune_mask = (self.get_opacity < min_opacity).squeeze(-1)
        if max_screen_size:
            too_big_on_screen = self.max_radii2D > max_screen_size
            too_big_in_world = self.get_scaling.max(dim=1).values > 0.1 * scene_extent
            prune_mask |= too_big_on_screen | too_big_in_world
        self.prune_points(prune_mask)
        self._reset_densification_stats()

    # ---- checkpoint state -------------------------------------------------------------------------------------

    def capture(self) -> dict[str, Any]:
        """A snapshot of everything needed to continue training exactly: parameters, Adam state and
        densification statistics."""
        return {
            "active_sh_degree": self.active_sh_degree,
            "max_sh_degree": self.max_sh_degree,
            "spatial_lr_scale": self.spatial_lr_scale,
            "params": {name: self.raw_parameter(name).clone() for name in self.param_names},
            "xyz_gradient_accum": self.xyz_gradient_accum.clone(),
            "denom": self.denom.clone(),
            "max_radii2D": self.max_radii2D.clone(),
            # state_dict() hands out the live moment tensors, which later steps update in place.
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
        }

    def restore(self, state: dict[str, Any], opt: Namespace) -> None:
        """Inverse of capture(); opt supplies the hyper-parameters (learning rates, schedule, percent_dense)."""
        if state["max_sh_degree"] != self.max_sh_degree:
            raise ValueError(
                f"checkpoint has SH degree {state['max_sh_degree']} but the model was configured with "
                f"--sh_degree {self.max_sh_degree}"
            )
        self.spatial_lr_scale = state["spatial_lr_scale"]
        self._set_parameters(**{name: tensor.to(self.device) for name, tensor in state["params"].items()})
        self.active_sh_degree = state["active_sh_degree"]
        self.training_setup(opt)
        self.optimizer.load_state_dict(state["optimizer"])
        self.xyz_gradient_accum = state["xyz_gradient_accum"].to(self.device)
        self.denom = state["denom"].to(self.device)
        self.max_radii2D = state["max_radii2D"].to(self.device)

    # ---- PLY in the standard 3DGS attribute layout ------------------------------------------------------------

    def ply_attribute_names(self) -> list[str]:
        rest_count = 3 * (sh_coefficient_count(self.max_sh_degree) - 1)
        return (
            ["x", "y", "z", "nx", "ny", "nz"]
            + [f"f_dc_{i}" for i in range(3)]
            + [f"f_rest_{i}" for i in range(rest_count)]
            + ["opacity"]
            + [f"scale_{i}" for i in range(3)]
            + [f"rot_{i}" for i in range(4)]
        )

    def save_ply(self, path: str) -> None:
        xyz = self._xyz.detach().cpu().numpy()
        # Channel-major SH layout: all coefficients of red, then green, then blue.
        f_dc = self._features_dc.detach().transpose(1, 2).flatten(start_dim=1).cpu().numpy()
        f_rest = self._features_rest.detach().transpose(1, 2).flatten(start_dim=1).cpu().numpy()
        columns = np.concatenate(
            [
                xyz,
                np.zeros_like(xyz),
                f_dc,
                f_rest,
                self._opacity.detach().cpu().numpy(),
                self._scaling.detach().cpu().numpy(),
                self._rotation.detach().cpu().numpy(),
            ],
            axis=1,
        )
        record = np.dtype([(name, "<f4") for name in self.ply_attribute_names()])
        vertices = np.ascontiguousarray(columns, dtype="<f4").view(record).reshape(-1)
        with atomic_write(path) as file:
            PlyData([PlyElement.describe(vertices, "vertex")], byte_order="<").write(file)

    def load_ply(self, path: str) -> None:
        """Load Gaussians saved by save_ply or any tool using the 3DGS layout; the SH degree is taken from the file
        and becomes both the maximum and the active degree."""
        if not os.path.isfile(path):
            raise PlyFormatError(f"{path}: no such file")
        try:
            ply = PlyData.read(path)
        except Exception as error:
            raise PlyFormatError(f"{path}: not a readable PLY file ({error})") from error
        if "vertex" not in ply:
            raise PlyFormatError(f"{path}: has no 'vertex' element")
        vertex = ply["vertex"]
        present = set(vertex.data.dtype.names)
        rest_names = sorted((n for n in present if n.startswith("f_rest_")), key=lambda n: int(n.split("_")[-1]))
        rest_per_channel, remainder = divmod(len(rest_names), 3)
        degree = round(math.sqrt(rest_per_channel + 1)) - 1
        if remainder or sh_coefficient_count(degree) - 1 != rest_per_channel:
            raise PlyFormatError(
                f"{path}: {len(rest_names)} f_rest_* attributes do not match any spherical-harmonics degree "
                "(expected 0, 9, 24 or 45)"
            )
        self.max_sh_degree = degree
        normals = ("nx", "ny", "nz")  # written for viewer compatibility, never read
        missing = [name for name in self.ply_attribute_names() if name not in present and name not in normals]
        if missing:
            raise PlyFormatError(f"{path}: missing vertex attributes {', '.join(missing)}")

        def stack(names: list[str]) -> torch.Tensor:
            array = np.stack([np.asarray(vertex[name], dtype=np.float32) for name in names], axis=1)
            return torch.tensor(array, device=self.device)

        count = len(vertex.data)
        tensors = {
            "xyz": stack(["x", "y", "z"]),
            "f_dc": stack([f"f_dc_{i}" for i in range(3)]).reshape(count, 3, 1).transpose(1, 2),
            "f_rest": stack(rest_names).reshape(count, 3, rest_per_channel).transpose(1, 2),
            "opacity": stack(["opacity"]),
            "scaling": stack([f"scale_{i}" for i in range(3)]),
            "rotation": stack([f"rot_{i}" for i in range(4)]),
        }
        for name, tensor in tensors.items():
            if not torch.isfinite(tensor).all():
                raise PlyFormatError(f"{path}: non-finite values in the {name} attributes")
        self._set_parameters(**tensors)
        self.active_sh_degree = degree
