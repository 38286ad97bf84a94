"""What the viewer shows: a run's cameras and the Gaussians of one of its snapshots.

A snapshot is either a saved point cloud (point_cloud/iteration_N/point_cloud.ply, written at --save_iterations and
at the end of training) or a training checkpoint (chkpnt<N>.pth, written periodically while training runs), so a
run can be viewed both when it has finished and while it is still training.
"""

import os
from argparse import Namespace
from dataclasses import dataclass

import numpy as np
import torch

from arguments import OptimizationParams
from blur import blur_model_from_state, load_blur_model
from scene.cameras import Camera
from scene.dataset_readers import load_scene_info
from scene.gaussian_model import GaussianModel, GaussianParams
from scene.scene import point_cloud_path, saved_iterations
from utils.checkpoints import checkpoint_iterations_in, checkpoint_path, load_checkpoint
from utils.errors import UserError
from utils.images import background_color


class ViewerError(UserError, ValueError):
    """A model folder the viewer cannot show."""


@dataclass(frozen=True)
class Snapshot:
    iteration: int
    path: str
    is_checkpoint: bool

    def describe(self):
        return f"iteration {self.iteration} ({'checkpoint' if self.is_checkpoint else 'point cloud'})"


def list_snapshots(model_path):
    """Every snapshot of the run, oldest first; at equal iterations the point cloud comes last, so that the
    newest snapshot is the cheaper one to read."""
    snapshots = [Snapshot(iteration, point_cloud_path(model_path, iteration), False)
                 for iteration in saved_iterations(model_path)]
    snapshots += [Snapshot(iteration, checkpoint_path(model_path, iteration), True)
                  for iteration in checkpoint_iterations_in(model_path)]
    return sorted(snapshots, key=lambda snapshot: (snapshot.iteration, not snapshot.is_checkpoint))


def find_snapshot(model_path, iteration=-1):
    """The snapshot saved at iteration, or the newest for -1."""
    snapshots = list_snapshots(model_path)
    if not snapshots:
        raise ViewerError(
            f"{model_path}: nothing to view: no point_cloud/iteration_*/point_cloud.ply and no chkpnt*.pth checkpoint"
        )
    if iteration == -1:
        return snapshots[-1]
    matching = [snapshot for snapshot in snapshots if snapshot.iteration == iteration]
    if not matching:
        saved = ", ".join(str(iteration) for iteration in sorted({snapshot.iteration for snapshot in snapshots}))
        raise ViewerError(f"{model_path}: no point cloud or checkpoint saved at iteration {iteration} (saved: {saved})")
    return matching[-1]


@dataclass
class ViewedModel:
    """The Gaussians of one snapshot, ready to render."""

    snapshot: Snapshot
    params: GaussianParams
    num_points: int
    # Where the browser camera orbits after a jump: a point inside the scene rather than at the camera.
    center: np.ndarray
    # The blur model trained with the Gaussians (blur.load_blur_model); None for a run trained with --blur none.
    blur_model: object


def load_snapshot(model_path, snapshot, device):
    """The GaussianModel saved in snapshot and the blur model trained with it (None for a run without one)."""
    if not snapshot.is_checkpoint:
        gaussians = GaussianModel(0, device)  # load_ply takes the SH degree from the file
        gaussians.load_ply(snapshot.path)
        return gaussians, load_blur_model(model_path, iteration=snapshot.iteration, device=device)
    try:
        state = load_checkpoint(snapshot.path)
        gaussians = GaussianModel(state["gaussians"]["max_sh_degree"], device)
        # Restoring builds an optimizer from default hyper-parameters; only the parameters are kept afterwards.
        gaussians.restore(state["gaussians"], OptimizationParams.extract(Namespace()))
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ViewerError(f"{snapshot.path}: cannot read the Gaussians of this checkpoint ({error})") from error
    blur_state = state.get("blur")
    blur_model = None if blur_state is None else blur_model_from_state(blur_state, device, snapshot.path).eval()
    return gaussians, blur_model


def load_model(model_path, snapshot, device):
    gaussians, blur_model = load_snapshot(model_path, snapshot, device)
    if gaussians.num_points == 0:
        raise ViewerError(f"{snapshot.path}: holds no Gaussians")
    with torch.no_grad():
        params = gaussians.render_params()
        params = GaussianParams(
            means=params.means.detach(), scales=params.scales.detach(), rotations=params.rotations.detach(),
            opacities=params.opacities.detach(), sh_coeffs=params.sh_coeffs.detach(), sh_degree=params.sh_degree,
        )
    tensors = (params.means, params.scales, params.rotations, params.opacities, params.sh_coeffs)
    if not all(torch.isfinite(tensor).all() for tensor in tensors):
        raise ViewerError(f"{snapshot.path}: non-finite Gaussian parameters")
    center = params.means.median(dim=0).values.double().cpu().numpy()
    return ViewedModel(snapshot, params, gaussians.num_points, center, blur_model)


@dataclass
class ViewerScene:
    """Everything the viewer serves, loaded and checked before the server starts."""

    model_path: str
    train_cameras: list
    test_cameras: list
    model: ViewedModel
    background: torch.Tensor
    backend: str
    device: torch.device


def load_viewer_scene(dataset, backend, iteration=-1):
    """Read the run described by ModelParams dataset (as train.py stored them in cfg_args): its cameras from the
    scene folder, and the snapshot at iteration (-1: the newest)."""
    device = torch.device(dataset.device)
    snapshot = find_snapshot(dataset.model_path, iteration)
    model = load_model(dataset.model_path, snapshot, device)
    info = load_scene_info(dataset.source_path, resolution=dataset.resolution, eval=dataset.eval, hold=dataset.hold,
                           white_background=dataset.white_background)
    if not info.train_cameras:
        raise ViewerError(f"{dataset.source_path}: the scene has no training views")
    background = background_color(dataset.white_background, device)
    return ViewerScene(
        model_path=os.path.abspath(dataset.model_path),
        train_cameras=[Camera.from_info(camera, device) for camera in info.train_cameras],
        test_cameras=[Camera.from_info(camera, device) for camera in info.test_cameras],
        model=model,
        background=background,
        backend=backend,
        device=device,
    )
