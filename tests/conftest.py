"""Fixtures shared by the tests: one torch thread for every test, the scenes the training tests train on, and
how a command line refuses bad input."""

import pytest
import torch

from scene.synthetic import generate_scene, preset_config
from tiny_scene import make_tiny_scene
from utils.errors import USER_ERROR_STATUS


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Every test here, and every process it starts, computes on one thread. A training run is bitwise the same
    at a fixed thread count but not across counts (reductions split differently), and the margins of the tests
    that compare trainings were measured at one thread; on a shared machine one thread per run is also the
    fastest (a second one waits for a core at every small operation)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        yield
    torch.set_num_threads(threads)


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
