"""Fixtures shared by the tests: the scenes they train on, and how a command line refuses bad input."""

import pytest

from scene.synthetic import generate_scene, preset_config
from tiny_scene import make_tiny_scene
from utils.errors import USER_ERROR_STATUS


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


@pytest.fixture
def refusal(capsys):
    """refusal(main, argv): what a command line's main(argv) writes to stderr as it refuses bad input; fails unless
    it exits with the bad-input status."""
    def refuse(main, argv):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == USER_ERROR_STATUS
        return capsys.readouterr().err
    return refuse
