"""Scene layouts: forward-facing arrangements of textured objects between 2 and 10 units from the cameras.

World axes follow the cameras: x right, y down, z forward. The cameras stand near the origin; the floor is the
plane y = FLOOR_Y and a background wall closes the scene at z = WALL_Z. The seed moves the objects a little
and shuffles which photograph goes where, so one layout gives many different scenes.
"""

import numpy as np

from .primitives import Box, Rectangle, Sphere, rotation_about_y
from .raycaster import TexturedScene
from .textures import PHOTOGRAPHS

FLOOR_Y = 1.5
WALL_Z = 10.0
ROOM_HALF_WIDTH = 9.0
ROOM_TOP_Y = -7.0

# The nearest surfaces of every layout stand about this far from the cameras.
NEAREST_OBJECT_DEPTH = 2.0
# Depths a defocused view may focus at: from the nearest objects to the middle distance, so that the wall and
# the far floor, which fill much of every picture, are never quite sharp.
FOCUS_RANGE = (2.2, 6.5)


def _room(wall_texture, floor_texture):
    wall = Rectangle(wall_texture, (0.0, (ROOM_TOP_Y + FLOOR_Y) / 2, WALL_Z), (1, 0, 0), (0, 1, 0),
                     ROOM_HALF_WIDTH, (FLOOR_Y - ROOM_TOP_Y) / 2, repeat=(4.0, 2.0))
    floor = Rectangle(floor_texture, (0.0, FLOOR_Y, (0.5 + WALL_Z) / 2), (1, 0, 0), (0, 0, -1),
                      ROOM_HALF_WIDTH, (WALL_Z - 0.5) / 2, repeat=(6.0, 3.0))
    return [wall, floor]


def _panel(textures, texture, centre, half_width, yaw_degrees):
    """A picture facing the cameras, turned by yaw about the vertical, as tall as its texture's aspect says."""
    aspect = textures[texture].height / textures[texture].width
    right = rotation_about_y(yaw_degrees) @ np.array([1.0, 0.0, 0.0], np.float32)
    return Rectangle(texture, centre, right, (0, 1, 0), half_width, half_width * aspect)


def _on_floor(rng, x, z, half_height, spread=0.15):
    """Centre of an object of the given half height standing on the floor near (x, z)."""
    return (x + rng.normal(0.0, spread), FLOOR_Y - half_height, z + rng.normal(0.0, spread))


def _floating(rng, x, y, z, spread=0.15):
    return tuple(np.array([x, y, z]) + rng.normal(0.0, spread, 3))


def gallery(textures, rng):
    """Framed photographs and a resolution chart hanging at staggered depths."""
    photos = [str(name) for name in rng.permutation(list(PHOTOGRAPHS))]
    return _room("poster", "gravel") + [
        _panel(textures, photos[0], _floating(rng, -1.2, -0.1, 2.6), 0.55, 18 + rng.normal(0, 5)),
        _panel(textures, "chart", _floating(rng, 1.1, 0.1, 3.7), 0.65, -12 + rng.normal(0, 5)),
        _panel(textures, photos[1], _floating(rng, -2.0, -0.5, 5.4), 1.1, 8 + rng.normal(0, 5)),
        _panel(textures, photos[2], _floating(rng, 2.4, -0.7, 7.0), 1.3, -20 + rng.normal(0, 5)),
        _panel(textures, photos[3], _floating(rng, 0.1, -1.6, 8.7), 1.4, rng.normal(0, 5)),
    ]


def blocks(textures, rng):
    """Boxes of several sizes standing on the floor, one stacked on another."""
    photos = [str(name) for name in rng.permutation(list(PHOTOGRAPHS))]
    big = Box(photos[2], _on_floor(rng, 1.9, 5.6, 0.9), (0.9, 0.9, 0.7), rotation_about_y(15 + rng.normal(0, 8)))
    on_top = (big.centre[0] + rng.normal(0, 0.1), big.centre[1] - 0.9 - 0.35, big.centre[2])
    return _room("brick", "page") + [
        Box(photos[0], _on_floor(rng, -1.3, 3.0, 0.5), (0.5, 0.5, 0.5), rotation_about_y(25 + rng.normal(0, 8))),
        Box("chart", _on_floor(rng, 0.9, 2.8, 0.35), (0.35, 0.35, 0.35), rotation_about_y(-30 + rng.normal(0, 8))),
        big,
        Box(photos[1], on_top, (0.35, 0.35, 0.35), rotation_about_y(-25 + rng.normal(0, 8))),
        Box("poster", _on_floor(rng, -2.6, 7.2, 1.2), (1.0, 1.2, 0.8), rotation_about_y(-10 + rng.normal(0, 8))),
        Box(photos[3], _on_floor(rng, 0.2, 8.6, 0.6), (0.8, 0.6, 0.6), rotation_about_y(40 + rng.normal(0, 8))),
    ]


def orbs(textures, rng):
    """Photograph-wrapped balls on a brick floor in front of a wall with a resolution chart."""
    photos = [str(name) for name in rng.permutation(list(PHOTOGRAPHS))]
    spheres = []
    for photo, (x, z, radius) in zip(photos, ((-1.0, 2.5, 0.45), (1.3, 3.9, 0.7), (0.2, 5.2, 0.55),
                                              (-2.1, 6.3, 1.0), (2.6, 7.9, 1.2))):
        spin = rotation_about_y(rng.normal(0, 20))
        spheres.append(Sphere(photo, _on_floor(rng, x, z, radius), radius, spin))
    chart = _panel(textures, "chart", (0.0, -1.4, WALL_Z - 0.05), 1.2, 0.0)
    return _room("cells", "brick") + spheres + [chart]


def corridor(textures, rng):
    """Two side walls receding from 1 to 10 units, so that depth, and with it defocus, changes smoothly
    across the picture, with a ball, a box and a picture down the middle."""
    photos = [str(name) for name in rng.permutation(list(PHOTOGRAPHS))]
    depth_middle = (1.0 + WALL_Z) / 2
    half_length = (WALL_Z - 1.0) / 2
    left = Rectangle("poster", (-3.0, -1.0, depth_middle), (0, 0, 1), (0, 1, 0), half_length, 2.5, repeat=(2.0, 1.0))
    right = Rectangle("brick", (3.0, -1.0, depth_middle), (0, 0, -1), (0, 1, 0), half_length, 2.5,
                      repeat=(2.0, 1.0))
    return _room("page", "gravel") + [
        left,
        right,
        Sphere(photos[0], _on_floor(rng, -0.9, 3.0, 0.6), 0.6, rotation_about_y(rng.normal(0, 20))),
        Box(photos[1], _on_floor(rng, 1.0, 5.0, 0.6), (0.6, 0.6, 0.6), rotation_about_y(30 + rng.normal(0, 8))),
        _panel(textures, photos[2], _floating(rng, -0.3, -0.4, 7.5), 1.0, rng.normal(0, 5)),
    ]


LAYOUTS = {"gallery": gallery, "blocks": blocks, "orbs": orbs, "corridor": corridor}


def build_scene(layout, textures, rng):
    return TexturedScene(LAYOUTS[layout](textures, rng), textures)
