"""Real-time viewing of a trained (or training) run in the browser: `python render.py -m output/run --view`."""

from viewer.poses import ViewerPoseError, camera_from_viewer_pose, viewer_pose_of
from viewer.server import Viewer
from viewer.snapshots import ViewerError, ViewerScene, find_snapshot, list_snapshots, load_viewer_scene

__all__ = [
    "Viewer",
    "ViewerError",
    "ViewerPoseError",
    "ViewerScene",
    "camera_from_viewer_pose",
    "find_snapshot",
    "list_snapshots",
    "load_viewer_scene",
    "viewer_pose_of",
]
