"""Fixtures shared by the training tests: the scenes they train on."""

import pytest

from scene.synthetic import generate_scene, preset_config
from tiny_scene import make_tiny_scene


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    """The tiny COLMAP-layout scene of tiny_scene.py, made once per test module."""
    folder = tmp_path_factory.mktemp("tiny_scene")
    make_tiny_scene(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_defocus_scene(tmp_path_factory):
    """The synthetic generator's tiny defocus scene (seed 0), alone in a benchmark-suite folder as tiny_defocus/.
    Made once for the whole run; tests only read it."""
    folder = tmp_path_factory.mktemp("suite") / "tiny_defocus"
    generate_scene(preset_config("tiny", "defocus", seed=0), folder, log=lambda message: None)
    return str(folder)
