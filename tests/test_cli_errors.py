"""Every command line refuses bad input the same way: one line `<program>: error: <message>` on stderr that names
the input, and exit status 2 (argparse's for a bad command line), so that a calling script can tell bad input from
a crash."""

import os
import subprocess
import sys

import pytest

from utils.errors import USER_ERROR_STATUS

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def model_of_a_moved_scene(folder):
    """A model folder whose cfg_args names a scene folder that is gone; returns (model, scene)."""
    model, scene = folder / "model", folder / "gone"
    model.mkdir()
    (model / "cfg_args").write_text(f"Namespace(source_path={str(scene)!r}, model_path={str(model)!r})")
    return str(model), str(scene)


def render_of_a_moved_scene(folder):
    model, scene = model_of_a_moved_scene(folder)
    return ["render.py", "-m", model, "--device", "cpu"], "render.py", scene


def convert_without_photos(folder):
    pytest.importorskip("pycolmap")
    return ["convert.py", "-s", str(folder)], "convert.py", os.path.join(str(folder), "input")


def metrics_of_an_unrendered_model(folder):
    return ["metrics.py", "-m", str(folder)], "metrics.py", str(folder)


def synthetic_scene_with_a_negative_aperture(folder):
    program = "python -m scene.synthetic"
    argv = ["-m", "scene.synthetic", "--blur", "defocus", "--aperture", "-1", "--out", str(folder / "scene")]
    return argv, program, "max_aperture"


def nerf_baseline_on_a_missing_scene(folder):
    program = "python -m baselines.nerf.train"
    missing = str(folder / "no_such_scene")
    return ["-m", "baselines.nerf.train", "-s", missing, "--method", "nerf", "--device", "cpu"], program, missing


def image_deblurring_of_a_missing_scene(folder):
    program = "python -m baselines.image.deblur"
    missing = str(folder / "no_such_scene")
    return ["-m", "baselines.image.deblur", "-s", missing, "-o", str(folder / "out"), "--method", "asn"], program, \
        missing


@pytest.mark.parametrize("bad_input", [
    render_of_a_moved_scene, convert_without_photos, metrics_of_an_unrendered_model,
    synthetic_scene_with_a_negative_aperture, nerf_baseline_on_a_missing_scene, image_deblurring_of_a_missing_scene,
], ids=lambda bad_input: bad_input.__name__)
def test_bad_input_ends_with_status_2_and_one_line_naming_it(tmp_path, bad_input):
    arguments, program, named = bad_input(tmp_path)
    result = subprocess.run([sys.executable, *arguments], cwd=REPOSITORY, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == USER_ERROR_STATUS, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{program}: error: ") and named in lines[0]
