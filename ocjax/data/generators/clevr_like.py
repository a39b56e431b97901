"""Procedural CLEVR-like scenes rendered by vectorised numpy ray casting.

A scene is a grey ground plane (z = 0) with 1 to 10 objects resting on it.
Every object has a CLEVR attribute set (shape, colour, material, size) and a
rotation about the vertical axis. Object geometry follows CLEVR: with the size
radius ``r`` (small 0.35, large 0.7) a sphere has radius ``r``, a cube has
half-side ``r / sqrt(2)`` (so its footprint diagonal is ``2 r``), and a
cylinder has radius ``r`` and half-height ``r``. Every object therefore fits in
a vertical disc of radius ``r`` around its centre, which is what placement uses
to keep objects apart.

The camera is a fixed perspective pinhole camera looking down at the origin
from an oblique angle, as in CLEVR; its elevation exceeds half its field of
view, so every pixel sees the ground or an object (no sky). One ray per pixel
centre decides the segmentation, so the masks are exact and occlusion-correct;
each object is only intersected with the rays inside the image window of its
bounding box, which keeps a 128 x 128 scene at a few milliseconds. Shading uses
a key light (``KEY_LIGHT``) that casts hard shadows, an unshadowed fill light
and hemispheric ambient light; metal objects add a specular highlight and a
tinted reflection of a sky gradient. There is no anti-aliasing.

``pixel_coords`` holds (column, row, depth) of each object centre: pixel
centres sit at integer coordinates (pixel ``[i, j]`` is at column ``j``, row
``i``) and depth is the distance along the camera's viewing axis.

The number of objects is capped at ``MAX_OBJECTS`` (10, as in CLEVR): placement
in the [-3, 3]^2 square with the minimum separation stays quick up to there.
"""

from __future__ import annotations

import functools

import numpy as np

SHAPES = ("sphere", "cube", "cylinder")
COLORS = ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow")
MATERIALS = ("rubber", "metal")
SIZES = ("small", "large")

COLOR_RGB = np.array(
    [
        [87, 87, 87],
        [173, 35, 35],
        [42, 75, 215],
        [29, 105, 20],
        [129, 74, 25],
        [129, 38, 192],
        [41, 208, 208],
        [255, 238, 51],
    ],
    dtype=np.float64,
)
SIZE_RADII = (0.35, 0.7)
MAX_OBJECTS = 10
MIN_RESOLUTION = 16
PLACEMENT_EXTENT = 3.0
PLACEMENT_MARGIN = 0.15

CAMERA_DISTANCE = 12.0
CAMERA_ELEVATION_DEG = 32.0
CAMERA_AZIMUTH_DEG = -45.0
CAMERA_FOV_DEG = 50.0

_SPHERE, _CUBE = 0, 1
_METAL = 1
_EPS = 1e-6
_SHADOW_OFFSET = 1e-4
_MAX_PLACEMENT_TRIES = 200

KEY_LIGHT = np.array([0.2, -0.75, 0.85]) / np.linalg.norm([0.2, -0.75, 0.85])
"""Unit direction [3] from the scene towards the shadow-casting key light."""
_FILL_LIGHT = np.array([-0.8, -0.2, 0.5]) / np.linalg.norm([-0.8, -0.2, 0.5])
_GROUND_RGB = np.array([158.0, 158.0, 158.0])


def _camera_basis() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Camera position [3] and its unit right, up and forward axes, each [3]."""
    elevation = np.deg2rad(CAMERA_ELEVATION_DEG)
    azimuth = np.deg2rad(CAMERA_AZIMUTH_DEG)
    position = CAMERA_DISTANCE * np.array(
        [
            np.cos(elevation) * np.cos(azimuth),
            np.cos(elevation) * np.sin(azimuth),
            np.sin(elevation),
        ]
    )
    forward = -position / np.linalg.norm(position)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return position, right, up, forward


def _check_resolution(resolution: int) -> None:
    """Raise ValueError unless resolution is an integer of at least MIN_RESOLUTION."""
    if not isinstance(resolution, (int, np.integer)) or resolution < MIN_RESOLUTION:
        raise ValueError(
            f"resolution must be an integer >= {MIN_RESOLUTION}, got {resolution!r}; "
            "pass a larger square image size such as 32, 64 or 128."
        )


@functools.lru_cache(maxsize=8)
def _cached_rays(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Read-only camera origin [3] and pixel-centre ray directions [res, res, 3]."""
    position, right, up, forward = _camera_basis()
    half_width = np.tan(np.deg2rad(CAMERA_FOV_DEG) / 2.0)
    centres = (np.arange(resolution) + 0.5) / resolution * 2.0 - 1.0
    horizontal = centres[None, :, None] * half_width
    vertical = -centres[:, None, None] * half_width
    directions = forward + horizontal * right + vertical * up
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    position.setflags(write=False)
    directions.setflags(write=False)
    return position, directions


@functools.lru_cache(maxsize=8)
def _channel_first_rays(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Camera origin [3] and contiguous pixel-centre ray directions [3, res, res]."""
    origin, rays = _cached_rays(resolution)
    return origin, np.ascontiguousarray(rays.transpose(2, 0, 1))


def camera_rays(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Camera origin [3] and unit ray directions [res, res, 3] through the pixel centres."""
    _check_resolution(resolution)
    return _cached_rays(int(resolution))


def project_points(points: np.ndarray, resolution: int) -> np.ndarray:
    """Project world points [n, 3] to (column, row, depth) [n, 3]; pixel centres are integers."""
    _check_resolution(resolution)
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape [n, 3], got {points.shape}.")
    return _project(points, resolution)


def _project(points: np.ndarray, resolution: int) -> np.ndarray:
    """Unchecked projection of world points [n, 3] to (column, row, depth) [n, 3]."""
    position, right, up, forward = _camera_basis()
    offsets = points - position
    depth = offsets @ forward
    half_width = np.tan(np.deg2rad(CAMERA_FOV_DEG) / 2.0)
    ndc_x = (offsets @ right) / (depth * half_width)
    ndc_y = (offsets @ up) / (depth * half_width)
    column = (ndc_x + 1.0) / 2.0 * resolution - 0.5
    row = (1.0 - ndc_y) / 2.0 * resolution - 0.5
    return np.stack([column, row, depth], axis=-1)


def _place_objects(rng: np.random.Generator, radii: np.ndarray) -> np.ndarray:
    """Sample non-overlapping ground positions [n, 2] for objects with footprint radii [n]."""
    while True:
        placed: list[np.ndarray] = []
        for radius in radii:
            position = _try_place(rng, radius, placed, radii[: len(placed)])
            if position is None:
                break
            placed.append(position)
        if len(placed) == len(radii):
            return np.array(placed).reshape(len(radii), 2)


def _try_place(
    rng: np.random.Generator,
    radius: float,
    placed: list[np.ndarray],
    placed_radii: np.ndarray,
) -> np.ndarray | None:
    """Rejection-sample one position [2] clear of the placed objects, or None if none is found."""
    others = np.array(placed).reshape(-1, 2)
    min_distance = placed_radii + radius + PLACEMENT_MARGIN
    for _ in range(_MAX_PLACEMENT_TRIES):
        candidate = rng.uniform(-PLACEMENT_EXTENT, PLACEMENT_EXTENT, size=2)
        if np.all(np.linalg.norm(others - candidate, axis=1) >= min_distance):
            return candidate
    return None


def _sample_scene(
    rng: np.random.Generator, min_objects: int, max_objects: int
) -> dict[str, np.ndarray]:
    """Sample object attributes, centres [n, 3] and rotations [n] (degrees) for one scene."""
    num_objects = int(rng.integers(min_objects, max_objects + 1))
    shape = rng.integers(0, len(SHAPES), num_objects)
    color = rng.integers(0, len(COLORS), num_objects)
    material = rng.integers(0, len(MATERIALS), num_objects)
    size = rng.integers(0, len(SIZES), num_objects)
    rotation = rng.uniform(0.0, 360.0, num_objects)
    radii = np.asarray(SIZE_RADII)[size]
    ground_xy = _place_objects(rng, radii)
    height = np.where(shape == _CUBE, radii / np.sqrt(2.0), radii)
    position = np.concatenate([ground_xy, height[:, None]], axis=1)
    return {
        "shape": shape,
        "color": color,
        "material": material,
        "size": size,
        "position": position,
        "rotation": rotation,
        "radius": radii,
    }


def _to_local(
    origins: np.ndarray, directions: np.ndarray, centre: np.ndarray, angle: float
) -> tuple[np.ndarray, np.ndarray]:
    """Rays (origins [3, m] or [3, 1], directions [3, m]) in an object frame turned about z."""
    cos, sin = np.cos(angle), np.sin(angle)
    ox, oy, oz = origins[0] - centre[0], origins[1] - centre[1], origins[2] - centre[2]
    dx, dy, dz = directions
    local_origins = np.stack(np.broadcast_arrays(cos * ox + sin * oy, cos * oy - sin * ox, oz))
    local_directions = np.stack([cos * dx + sin * dy, cos * dy - sin * dx, dz])
    return local_origins, local_directions


def _hit_sphere(origins: np.ndarray, directions: np.ndarray, radius: float) -> np.ndarray:
    """Distance [m] to a sphere at the local origin (inf on miss) for local rays [3, m]."""
    b = np.einsum("im,im->m", origins, directions)
    c = np.einsum("im,im->m", origins, origins) - radius * radius
    disc = b * b - c
    with np.errstate(invalid="ignore"):
        t = -b - np.sqrt(disc)
    return np.where((disc >= 0.0) & (t > _EPS), t, np.inf)


def _hit_box(origins: np.ndarray, directions: np.ndarray, half: float) -> np.ndarray:
    """Distance [m] to an axis-aligned cube of half-side half at the local origin (inf on miss)."""
    safe = np.where(np.abs(directions) < 1e-12, 1e-12, directions)
    inverse = 1.0 / safe
    t_low = (-half - origins) * inverse
    t_high = (half - origins) * inverse
    t_near = np.minimum(t_low, t_high).max(axis=0)
    t_far = np.maximum(t_low, t_high).min(axis=0)
    return np.where((t_near <= t_far) & (t_near > _EPS), t_near, np.inf)


def _hit_cylinder(origins: np.ndarray, directions: np.ndarray, radius: float) -> np.ndarray:
    """Distance [m] to an upright cylinder (radius and half-height radius) at the local origin."""
    ox, oy, oz = origins
    dx, dy, dz = directions
    a = dx * dx + dy * dy
    b = ox * dx + oy * dy
    c = ox * ox + oy * oy - radius * radius
    disc = b * b - a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        t_side = (-b - np.sqrt(disc)) / a
        side_z = oz + t_side * dz
        side_ok = (disc >= 0.0) & (a > 1e-12) & (t_side > _EPS) & (np.abs(side_z) <= radius)
        t = np.where(side_ok, t_side, np.inf)
        for cap_z in (-radius, radius):
            t_cap = (cap_z - oz) / dz
            cap_x, cap_y = ox + t_cap * dx, oy + t_cap * dy
            cap_ok = (t_cap > _EPS) & (cap_x * cap_x + cap_y * cap_y <= radius * radius)
            t = np.where(cap_ok & (t_cap < t), t_cap, t)
    return t


def _object_hit(
    scene: dict[str, np.ndarray], k: int, origins: np.ndarray, directions: np.ndarray
) -> np.ndarray:
    """Hit distances [m] of rays (origins [3, m] or [3, 1], directions [3, m]) to object k."""
    angle = np.deg2rad(scene["rotation"][k])
    local_o, local_d = _to_local(origins, directions, scene["position"][k], angle)
    radius = scene["radius"][k]
    if scene["shape"][k] == _SPHERE:
        return _hit_sphere(local_o, local_d, radius)
    if scene["shape"][k] == _CUBE:
        return _hit_box(local_o, local_d, radius / np.sqrt(2.0))
    return _hit_cylinder(local_o, local_d, radius)


def _object_boxes(scene: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """World axis-aligned bounds (low, high), each [n, 3], enclosing every object."""
    extent = np.stack([scene["radius"], scene["radius"], scene["position"][:, 2]], axis=1)
    return scene["position"] - extent, scene["position"] + extent


def _shadow_boxes(scene: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Bounds (low, high) [n, 3] of the points whose key-light ray may meet each object."""
    low, high = _object_boxes(scene)
    sweep = high[:, 2:] * KEY_LIGHT[:2] / KEY_LIGHT[2]
    low[:, :2] -= np.maximum(sweep, 0.0)
    high[:, :2] -= np.minimum(sweep, 0.0)
    return low, high


def _pixel_windows(low: np.ndarray, high: np.ndarray, resolution: int) -> np.ndarray:
    """Pixel windows [n, 4] (row_start, row_stop, col_start, col_stop) covering boxes [n, 3]."""
    corners = np.stack([np.where([i & 1, i & 2, i & 4], high, low) for i in range(8)], axis=1)
    projected = _project(corners.reshape(-1, 3), resolution).reshape(-1, 8, 3)
    start = np.floor(projected[..., :2].min(axis=1))
    stop = np.ceil(projected[..., :2].max(axis=1)) + 1
    windows = np.stack([start[:, 1], stop[:, 1], start[:, 0], stop[:, 0]], axis=1)
    return np.clip(windows, 0, resolution).astype(int)


def _trace_camera(
    scene: dict[str, np.ndarray], origin: np.ndarray, rays: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Owner (0 = ground, k = object k) and hit distance, both [res, res], of rays [3, res, res]."""
    depth = -origin[2] / rays[2]
    owner = np.zeros(depth.shape, dtype=np.int64)
    for k, (r0, r1, c0, c1) in enumerate(_pixel_windows(*_object_boxes(scene), len(depth))):
        window = rays[:, r0:r1, c0:c1]
        hits = _object_hit(scene, k, origin[:, None], window.reshape(3, -1)).reshape(
            window.shape[1:]
        )
        nearer = hits < depth[r0:r1, c0:c1]
        depth[r0:r1, c0:c1][nearer] = hits[nearer]
        owner[r0:r1, c0:c1][nearer] = k + 1
    return owner, depth


def _object_normals(kind: int, points: np.ndarray, centre: np.ndarray, angle: float) -> np.ndarray:
    """World-space unit surface normals [3, m] of one object at surface points [3, m]."""
    local, _ = _to_local(points, points, centre, angle)
    if kind == _SPHERE:
        normal = local
    elif kind == _CUBE:
        axis = np.abs(local).argmax(axis=0)
        normal = np.zeros_like(local)
        columns = np.arange(local.shape[1])
        normal[axis, columns] = np.sign(local[axis, columns])
    else:
        on_cap = np.abs(local[2]) >= np.hypot(local[0], local[1])
        normal = np.where(
            on_cap, [[0.0], [0.0], [1.0]] * np.sign(local[2]), local * [[1], [1], [0]]
        )
    normal = normal / np.linalg.norm(normal, axis=0, keepdims=True)
    cos, sin = np.cos(angle), np.sin(angle)
    return np.stack(
        [cos * normal[0] - sin * normal[1], sin * normal[0] + cos * normal[1], normal[2]]
    )


def _surface_normals(
    scene: dict[str, np.ndarray], owner: np.ndarray, points: np.ndarray
) -> np.ndarray:
    """Unit normals [3, res, res] at the visible points [3, res, res] of owners [res, res]."""
    normals = np.zeros_like(points)
    normals[2] = 1.0
    for k, kind in enumerate(scene["shape"]):
        mask = owner == k + 1
        if mask.any():
            angle = np.deg2rad(scene["rotation"][k])
            normals[:, mask] = _object_normals(kind, points[:, mask], scene["position"][k], angle)
    return normals


def _shadowed(scene: dict[str, np.ndarray], points: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Whether each visible point [3, res, res] that faces the key light is blocked, [res, res]."""
    facing = np.tensordot(KEY_LIGHT, normals, axes=1) > 0.0
    blocked = np.zeros(facing.shape, dtype=bool)
    for k, (r0, r1, c0, c1) in enumerate(_pixel_windows(*_shadow_boxes(scene), len(facing))):
        candidates = facing[r0:r1, c0:c1] & ~blocked[r0:r1, c0:c1]
        origins = points[:, r0:r1, c0:c1][:, candidates]
        origins = origins + _SHADOW_OFFSET * normals[:, r0:r1, c0:c1][:, candidates]
        directions = np.repeat(KEY_LIGHT[:, None], origins.shape[1], axis=1)
        blocked[r0:r1, c0:c1][candidates] = np.isfinite(_object_hit(scene, k, origins, directions))
    return blocked


def _shade_objects(
    view: np.ndarray,
    normals: np.ndarray,
    albedo: np.ndarray,
    metal: np.ndarray,
    shadowed: np.ndarray,
) -> np.ndarray:
    """Colours [3, m] (0-255) from view rays, normals, albedo [3, m] and metal, shadow flags [m]."""
    key = np.clip(KEY_LIGHT @ normals, 0.0, None) * ~shadowed
    fill = np.clip(_FILL_LIGHT @ normals, 0.0, None)
    diffuse = 0.28 + 0.12 * normals[2] + 0.75 * key + 0.25 * fill
    halfway = KEY_LIGHT[:, None] - view
    halfway /= np.linalg.norm(halfway, axis=0, keepdims=True)
    n_dot_h = np.clip(np.einsum("im,im->m", normals, halfway), 0.0, 1.0)
    reflected_z = view[2] - 2.0 * np.einsum("im,im->m", view, normals) * normals[2]
    sky = 0.25 + 0.35 * np.clip(reflected_z, 0.0, 1.0)
    lit = key > 0.0
    metal_colour = albedo * (0.55 * diffuse + sky) + 255.0 * 0.9 * n_dot_h**80 * lit
    rubber_colour = albedo * diffuse + 255.0 * 0.06 * n_dot_h**10 * lit
    return np.clip(np.where(metal, metal_colour, rubber_colour), 0.0, 255.0)


def _shade_ground(points: np.ndarray, shadowed: np.ndarray) -> np.ndarray:
    """Ground colours [3, res, res] (0-255) with a soft spotlight falloff and key-light shadows."""
    light = 0.4 + 0.75 * KEY_LIGHT[2] * ~shadowed + 0.25 * _FILL_LIGHT[2]
    falloff = 0.75 + 0.25 * np.exp(-(points[0] ** 2 + points[1] ** 2) / 60.0)
    return _GROUND_RGB[:, None, None] * (light * falloff)


def _render_image(
    scene: dict[str, np.ndarray], owner: np.ndarray, points: np.ndarray, rays: np.ndarray
) -> np.ndarray:
    """Shaded uint8 image [res, res, 3] from owners [res, res], points and rays [3, res, res]."""
    normals = _surface_normals(scene, owner, points)
    shadowed = _shadowed(scene, points, normals)
    image = _shade_ground(points, shadowed)
    on_object = owner > 0
    index = owner[on_object] - 1
    image[:, on_object] = _shade_objects(
        rays[:, on_object],
        normals[:, on_object],
        COLOR_RGB[scene["color"][index]].T,
        scene["material"][index] == _METAL,
        shadowed[on_object],
    )
    return np.round(image).astype(np.uint8).transpose(1, 2, 0)


def check_options(resolution: int, min_objects: int, max_objects: int) -> None:
    """Raise ValueError for a resolution or object-count range that cannot be rendered."""
    _check_resolution(resolution)
    if min_objects < 1:
        raise ValueError(
            f"min_objects must be >= 1, got {min_objects}; scenes need at least one object."
        )
    if min_objects > max_objects:
        raise ValueError(
            f"min_objects ({min_objects}) must not exceed max_objects ({max_objects}); "
            "swap or fix them."
        )
    if max_objects > MAX_OBJECTS:
        raise ValueError(
            f"max_objects must be <= {MAX_OBJECTS} (objects must fit without overlapping), "
            f"got {max_objects}."
        )


def render_scene(
    seed: int, resolution: int = 128, min_objects: int = 3, max_objects: int = 10
) -> dict[str, np.ndarray]:
    """Render a scene: image [res, res, 3] and segmentation [res, res] uint8, attributes [n]."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    check_options(resolution, min_objects, max_objects)
    scene = _sample_scene(np.random.default_rng(seed), min_objects, max_objects)
    origin, rays = _channel_first_rays(resolution)
    owner, depth = _trace_camera(scene, origin, rays)
    points = origin[:, None, None] + depth * rays
    num_pixels = np.bincount(owner.ravel(), minlength=len(scene["shape"]) + 1)[1:]
    return {
        "image": _render_image(scene, owner, points, rays),
        "segmentation": owner.astype(np.uint8),
        "shape": scene["shape"].astype(np.int32),
        "color": scene["color"].astype(np.int32),
        "material": scene["material"].astype(np.int32),
        "size": scene["size"].astype(np.int32),
        "position": scene["position"].astype(np.float32),
        "rotation": scene["rotation"].astype(np.float32),
        "pixel_coords": _project(scene["position"], resolution).astype(np.float32),
        "num_pixels": num_pixels.astype(np.int32),
        "visible": num_pixels > 0,
    }
