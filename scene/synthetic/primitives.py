"""Textured rectangles, boxes and spheres that rays can hit.

Rays come as (3, N) float32 arrays (one row per coordinate, so that every operation runs on contiguous
rows). Directions need not be unit length: the returned hit distance t is in units of the direction's
length. Every primitive offers intersect(origins, directions) -> t (N,) with inf where the ray misses, and
surface(points) -> (u, v, normals (3, M)) for points known to lie on it, and describe() -> a JSON-ready dict.
"""

import numpy as np

# Hits closer than this are ignored, so that rays starting on a surface do not hit it again.
MIN_HIT_DISTANCE = 1e-4


def _dot(vectors, fixed):
    return vectors[0] * fixed[0] + vectors[1] * fixed[1] + vectors[2] * fixed[2]


def _to_local(rotation, vectors):
    """Applies rotation.T to (3, N) vectors, i.e. expresses world vectors in the primitive's frame."""
    return np.stack([_dot(vectors, rotation[:, axis]) for axis in range(3)])


def json_numbers(values, digits=6):
    """Nested lists of Python floats rounded to the given decimals, for scene.json."""
    return np.round(np.asarray(values, np.float64), digits).tolist()


def rotation_about_y(angle_degrees):
    """Rotation that turns the +z axis towards +x by the given angle (a turn about the vertical axis)."""
    angle = np.radians(angle_degrees)
    return np.array([[np.cos(angle), 0.0, np.sin(angle)],
                     [0.0, 1.0, 0.0],
                     [-np.sin(angle), 0.0, np.cos(angle)]], np.float32)


class Rectangle:
    """A flat textured rectangle. axis_right and axis_down span it; the texture's top-left is at
    centre - half_width * axis_right - half_height * axis_down. repeat tiles the texture across it."""

    def __init__(self, texture, centre, axis_right, axis_down, half_width, half_height, repeat=(1.0, 1.0)):
        self.texture = texture
        self.centre = np.asarray(centre, np.float32)
        self.axis_right = np.asarray(axis_right, np.float32) / np.linalg.norm(axis_right)
        self.axis_down = np.asarray(axis_down, np.float32) / np.linalg.norm(axis_down)
        self.normal = np.cross(self.axis_right, self.axis_down)
        self.half_width = float(half_width)
        self.half_height = float(half_height)
        self.repeat = repeat

    def describe(self):
        return {"type": "rectangle", "texture": self.texture, "centre": json_numbers(self.centre),
                "axis_right": json_numbers(self.axis_right), "axis_down": json_numbers(self.axis_down),
                "half_width": self.half_width, "half_height": self.half_height, "repeat": json_numbers(self.repeat)}

    def intersect(self, origins, directions):
        # Rays parallel to the plane give an infinite or undefined t, which fails every comparison below.
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (float(self.centre @ self.normal) - _dot(origins, self.normal)) / _dot(directions, self.normal)
            offset = origins + t * directions - self.centre[:, None]
            inside = ((np.abs(_dot(offset, self.axis_right)) <= self.half_width)
                      & (np.abs(_dot(offset, self.axis_down)) <= self.half_height) & (t > MIN_HIT_DISTANCE))
        return np.where(inside, t, np.inf)

    def surface(self, points):
        offset = points - self.centre[:, None]
        u = (_dot(offset, self.axis_right) / (2.0 * self.half_width) + 0.5) * self.repeat[0]
        v = (_dot(offset, self.axis_down) / (2.0 * self.half_height) + 0.5) * self.repeat[1]
        return u, v, np.broadcast_to(self.normal[:, None], points.shape)


# For each face of a box (in the order -x, +x, -y, +y, -z, +z of its outward normal), the local directions
# that run right and down across the face as a viewer in front of it sees them, so that text reads upright.
_FACE_RIGHT = np.array([[0, 0, -1], [0, 0, 1], [1, 0, 0], [1, 0, 0], [1, 0, 0], [-1, 0, 0]], np.float32)
_FACE_DOWN = np.array([[0, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, -1], [0, 1, 0], [0, 1, 0]], np.float32)


class Box:
    """A textured box; rotation's columns are its local axes in world coordinates. Each face shows the
    texture shifted by a different amount, so that neighbouring faces do not look alike."""

    def __init__(self, texture, centre, half_sizes, rotation=np.eye(3)):
        self.texture = texture
        self.centre = np.asarray(centre, np.float32)
        self.half_sizes = np.asarray(half_sizes, np.float32)
        self.rotation = np.asarray(rotation, np.float32)

    def describe(self):
        return {"type": "box", "texture": self.texture, "centre": json_numbers(self.centre),
                "half_sizes": json_numbers(self.half_sizes), "rotation": json_numbers(self.rotation)}

    def intersect(self, origins, directions):
        local_origins = _to_local(self.rotation, origins - self.centre[:, None])
        local_directions = _to_local(self.rotation, directions)
        half_sizes = self.half_sizes[:, None]
        # Slab test; a direction component of zero gives infinite slab distances, which the min/max handle.
        with np.errstate(divide="ignore", invalid="ignore"):
            to_low = (-half_sizes - local_origins) / local_directions
            to_high = (half_sizes - local_origins) / local_directions
        entry = np.minimum(to_low, to_high).max(axis=0)
        exit_ = np.maximum(to_low, to_high).min(axis=0)
        return np.where((entry <= exit_) & (entry > MIN_HIT_DISTANCE), entry, np.inf)

    def surface(self, points):
        local_points = _to_local(self.rotation, points - self.centre[:, None])
        relative = local_points / self.half_sizes[:, None]
        axis = np.abs(relative).argmax(axis=0)
        positive = np.take_along_axis(relative, axis[None], axis=0)[0] > 0
        face = 2 * axis + positive
        right = _FACE_RIGHT[face].T
        down = _FACE_DOWN[face].T
        u = (right * relative).sum(axis=0) * 0.5 + 0.5 + 0.37 * face
        v = (down * relative).sum(axis=0) * 0.5 + 0.5
        local_normals = np.zeros_like(local_points)
        np.put_along_axis(local_normals, axis[None], np.where(positive, 1.0, -1.0)[None], axis=0)
        return u, v, self.rotation @ local_normals


class Sphere:
    """A textured sphere. The texture wraps around it (repeat[0] times around the equator) with its
    centre facing local -z, i.e. towards a camera looking along +z when rotation is the identity."""

    def __init__(self, texture, centre, radius, rotation=np.eye(3), repeat=(2.0, 1.0)):
        self.texture = texture
        self.centre = np.asarray(centre, np.float32)
        self.radius = float(radius)
        self.rotation = np.asarray(rotation, np.float32)
        self.repeat = repeat

    def describe(self):
        return {"type": "sphere", "texture": self.texture, "centre": json_numbers(self.centre), "radius": self.radius,
                "rotation": json_numbers(self.rotation), "repeat": json_numbers(self.repeat)}

    def intersect(self, origins, directions):
        to_origin = origins - self.centre[:, None]
        a = _dot(directions, directions)
        b = _dot(directions, to_origin)
        discriminant = b * b - a * (_dot(to_origin, to_origin) - self.radius ** 2)
        t = (-b - np.sqrt(np.maximum(discriminant, 0.0))) / a
        return np.where((discriminant >= 0.0) & (t > MIN_HIT_DISTANCE), t, np.inf)

    def surface(self, points):
        normals = (points - self.centre[:, None]) / self.radius
        local = _to_local(self.rotation, normals)
        u = (0.5 + np.arctan2(local[0], -local[2]) / (2.0 * np.pi)) * self.repeat[0]
        v = np.arccos(np.clip(-local[1], -1.0, 1.0)) / np.pi * self.repeat[1]
        return u, v, normals
