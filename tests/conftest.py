"""Fixtures shared by the training tests."""

import pytest

from tiny_scene import make_tiny_scene


@pytest.fixture(scope="module")
def tiny_scene(tmp_path_factory):
    """The tiny COLMAP-layout scene of tiny_scene.py, made once per test module."""
    folder = tmp_path_factory.mktemp("tiny_scene")
    make_tiny_scene(folder)
    return str(folder)
