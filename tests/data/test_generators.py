"""Tests for the procedural CLEVR-like and 2D shapes generators."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ocjax.data.generators import clevr_like, shapes
from ocjax.data.generators.clevr_like import camera_rays, render_scene
from ocjax.data.generators.shapes import VARIANTS, render_shapes, shape_mask

CLEVR_KEYS = {
    "image": (np.uint8, lambda r, n: (r, r, 3)),
    "segmentation": (np.uint8, lambda r, n: (r, r)),
    "shape": (np.int32, lambda r, n: (n,)),
    "color": (np.int32, lambda r, n: (n,)),
    "material": (np.int32, lambda r, n: (n,)),
    "size": (np.int32, lambda r, n: (n,)),
    "position": (np.float32, lambda r, n: (n, 3)),
    "rotation": (np.float32, lambda r, n: (n,)),
    "pixel_coords": (np.float32, lambda r, n: (n, 3)),
    "num_pixels": (np.int32, lambda r, n: (n,)),
    "visible": (np.bool_, lambda r, n: (n,)),
}


# ---------------------------------------------------------------- brute force


def _reference_ray(row: int, col: int, resolution: int) -> tuple[list[float], list[float]]:
    """Camera origin and unit direction of one pixel-centre ray, rebuilt from the constants."""
    el = math.radians(clevr_like.CAMERA_ELEVATION_DEG)
    az = math.radians(clevr_like.CAMERA_AZIMUTH_DEG)
    dist = clevr_like.CAMERA_DISTANCE
    eye = [
        dist * math.cos(el) * math.cos(az),
        dist * math.cos(el) * math.sin(az),
        dist * math.sin(el),
    ]
    forward = [-c / dist for c in eye]
    right = [forward[1], -forward[0], 0.0]
    norm = math.hypot(right[0], right[1])
    right = [c / norm for c in right]
    up = [
        right[1] * forward[2] - right[2] * forward[1],
        right[2] * forward[0] - right[0] * forward[2],
        right[0] * forward[1] - right[1] * forward[0],
    ]
    scale = math.tan(math.radians(clevr_like.CAMERA_FOV_DEG) / 2)
    x = ((col + 0.5) / resolution * 2 - 1) * scale
    y = (1 - (row + 0.5) / resolution * 2) * scale
    d = [forward[i] + x * right[i] + y * up[i] for i in range(3)]
    length = math.sqrt(sum(c * c for c in d))
    return eye, [c / length for c in d]


def _local(point: list[float], centre: list[float], degrees: float) -> list[float]:
    """Rotate a world offset into an object's frame (inverse rotation about z)."""
    a = math.radians(degrees)
    x, y, z = point[0] - centre[0], point[1] - centre[1], point[2] - centre[2]
    return [math.cos(a) * x + math.sin(a) * y, -math.sin(a) * x + math.cos(a) * y, z]


def _scalar_sphere(o: list[float], d: list[float], r: float) -> float:
    """Nearest positive hit distance of a ray with a sphere at the origin, or inf."""
    b = sum(o[i] * d[i] for i in range(3))
    c = sum(v * v for v in o) - r * r
    disc = b * b - c
    if disc < 0:
        return math.inf
    t = -b - math.sqrt(disc)
    return t if t > 0 else math.inf


def _scalar_cube(o: list[float], d: list[float], h: float) -> float:
    """Nearest hit of a ray with an axis-aligned cube, testing each of the six faces."""
    best = math.inf
    for axis in range(3):
        if d[axis] == 0:
            continue
        for sign in (-1.0, 1.0):
            t = (sign * h - o[axis]) / d[axis]
            if t <= 0:
                continue
            others = [o[i] + t * d[i] for i in range(3) if i != axis]
            if all(abs(v) <= h for v in others):
                best = min(best, t)
    return best


def _scalar_cylinder(o: list[float], d: list[float], r: float) -> float:
    """Nearest hit of a ray with an upright cylinder of radius r and half-height r."""
    best = math.inf
    a = d[0] ** 2 + d[1] ** 2
    b = o[0] * d[0] + o[1] * d[1]
    c = o[0] ** 2 + o[1] ** 2 - r * r
    if a > 0 and b * b - a * c >= 0:
        for t in ((-b - math.sqrt(b * b - a * c)) / a, (-b + math.sqrt(b * b - a * c)) / a):
            if t > 0 and abs(o[2] + t * d[2]) <= r:
                best = min(best, t)
    if d[2] != 0:
        for cap in (-r, r):
            t = (cap - o[2]) / d[2]
            if t > 0 and (o[0] + t * d[0]) ** 2 + (o[1] + t * d[1]) ** 2 <= r * r:
                best = min(best, t)
    return best


def _scalar_hit(scene: dict[str, np.ndarray], k: int, origin: list[float], d: list[float]) -> float:
    """Hit distance of one world ray with object k of a rendered scene (inf on miss)."""
    centre = [float(v) for v in scene["position"][k]]
    degrees = float(scene["rotation"][k])
    o = _local(origin, centre, degrees)
    dl = _local(d, [0.0, 0.0, 0.0], degrees)
    r = clevr_like.SIZE_RADII[scene["size"][k]]
    kind = clevr_like.SHAPES[scene["shape"][k]]
    if kind == "sphere":
        return _scalar_sphere(o, dl, r)
    if kind == "cube":
        return _scalar_cube(o, dl, r / math.sqrt(2))
    return _scalar_cylinder(o, dl, r)


def _object_hits(scene: dict[str, np.ndarray], row: int, col: int, resolution: int) -> list[float]:
    """Hit distance of one pixel ray with every object of a rendered scene (inf on miss)."""
    eye, d = _reference_ray(row, col, resolution)
    return [_scalar_hit(scene, k, eye, d) for k in range(len(scene["shape"]))]


def _expected_label(hits: list[float], row: int, col: int, resolution: int) -> int:
    """Label of the nearest object hit by a pixel ray, 0 when the ground is nearer or no hit."""
    eye, d = _reference_ray(row, col, resolution)
    ground = -eye[2] / d[2] if d[2] < 0 else math.inf
    nearest = min(range(len(hits)), key=lambda k: hits[k])
    return nearest + 1 if hits[nearest] < ground else 0


# ---------------------------------------------------------------- CLEVR-like


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_clevr_dtypes_and_shapes(resolution: int) -> None:
    """Every output has the documented dtype and shape at several resolutions."""
    scene = render_scene(3, resolution)
    n = len(scene["shape"])
    assert 3 <= n <= 10
    assert set(scene) == set(CLEVR_KEYS)
    for key, (dtype, shape) in CLEVR_KEYS.items():
        assert scene[key].dtype == dtype, key
        assert scene[key].shape == shape(resolution, n), key


def test_clevr_is_deterministic_per_seed() -> None:
    """The same seed gives identical arrays and another seed a different image."""
    first, again, other = render_scene(11, 32), render_scene(11, 32), render_scene(12, 32)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert not np.array_equal(first["image"], other["image"])


def test_clevr_attribute_ranges_and_object_count() -> None:
    """Object counts respect the bounds and attributes index the name tuples."""
    for seed in range(20):
        scene = render_scene(seed, 16, min_objects=2, max_objects=4)
        assert 2 <= len(scene["shape"]) <= 4
        assert scene["shape"].max() < len(clevr_like.SHAPES)
        assert scene["color"].max() < len(clevr_like.COLORS)
        assert scene["material"].max() < len(clevr_like.MATERIALS)
        assert scene["size"].max() < len(clevr_like.SIZES)
        assert np.all((scene["rotation"] >= 0) & (scene["rotation"] < 360))


def test_clevr_objects_rest_on_ground_without_intersecting() -> None:
    """Objects sit on z = 0 inside the placement square with disjoint footprints."""
    for seed in range(30):
        scene = render_scene(seed, 16, min_objects=10, max_objects=10)
        radii = np.array(clevr_like.SIZE_RADII)[scene["size"]]
        half_height = np.where(
            scene["shape"] == clevr_like.SHAPES.index("cube"), radii / math.sqrt(2), radii
        )
        np.testing.assert_allclose(scene["position"][:, 2], half_height, rtol=1e-6)
        xy = scene["position"][:, :2].astype(np.float64)
        gaps = np.linalg.norm(xy[:, None] - xy[None], axis=-1) - (radii[:, None] + radii[None])
        assert np.all(gaps[~np.eye(10, dtype=bool)] > 0)
        assert np.all(np.abs(xy) <= 3.0)


def test_clevr_segmentation_counts_match_bincount() -> None:
    """num_pixels and visible agree with a bincount of the segmentation."""
    for seed in range(5):
        scene = render_scene(seed, 64)
        n = len(scene["shape"])
        assert scene["segmentation"].max() <= n
        counts = np.bincount(scene["segmentation"].ravel(), minlength=n + 1)
        assert len(counts) == n + 1
        np.testing.assert_array_equal(scene["num_pixels"], counts[1:])
        np.testing.assert_array_equal(scene["visible"], counts[1:] > 0)


def test_camera_rays_match_reference_pinhole() -> None:
    """camera_rays equals a scalar pinhole camera rebuilt from the constants."""
    origin, rays = camera_rays(32)
    assert rays.shape == (32, 32, 3)
    for row, col in [(0, 0), (0, 31), (17, 5), (31, 31)]:
        eye, d = _reference_ray(row, col, 32)
        np.testing.assert_allclose(origin, eye, atol=1e-12)
        np.testing.assert_allclose(rays[row, col], d, atol=1e-12)


def _single_object_seed(kind: str) -> int:
    """First seed whose one-object scene holds a large object of the given shape."""
    for seed in range(200):
        scene = render_scene(seed, 16, 1, 1)
        if (
            clevr_like.SHAPES[scene["shape"][0]] == kind
            and clevr_like.SIZES[scene["size"][0]] == "large"
        ):
            return seed
    raise AssertionError(f"no one-object scene with a large {kind} in 200 seeds")


@pytest.mark.parametrize("kind", ["sphere", "cube", "cylinder"])
def test_single_object_mask_matches_brute_force(kind: str) -> None:
    """A one-object mask equals scalar ray casting on every pixel."""
    resolution = 48
    scene = render_scene(_single_object_seed(kind), resolution, 1, 1)
    expected = np.array(
        [
            [
                _expected_label(_object_hits(scene, r, c, resolution), r, c, resolution)
                for c in range(resolution)
            ]
            for r in range(resolution)
        ]
    )
    assert expected.sum() > 10
    np.testing.assert_array_equal(scene["segmentation"], expected)


def test_occlusion_nearest_hit_owns_pixel() -> None:
    """Where rays hit several objects, the nearest hit owns the pixel."""
    resolution = 32
    contested = 0
    for seed in range(4):
        scene = render_scene(seed, resolution, min_objects=8, max_objects=10)
        for r in range(resolution):
            for c in range(resolution):
                hits = _object_hits(scene, r, c, resolution)
                contested += sum(math.isfinite(h) for h in hits) >= 2
                assert scene["segmentation"][r, c] == _expected_label(hits, r, c, resolution), (
                    seed,
                    r,
                    c,
                )
    assert contested > 0


def test_sampled_pixels_at_full_resolution_match_brute_force() -> None:
    """Sampled 128 x 128 pixels of a crowded scene match scalar ray casting."""
    rng = np.random.default_rng(0)
    scene = render_scene(7, 128, min_objects=10, max_objects=10)
    foreground = np.argwhere(scene["segmentation"] > 0)
    pixels = np.concatenate(
        [foreground[rng.choice(len(foreground), 300)], rng.integers(0, 128, (100, 2))]
    )
    for r, c in pixels:
        expected = _expected_label(_object_hits(scene, r, c, 128), r, c, 128)
        assert scene["segmentation"][r, c] == expected, (r, c)


def test_fully_visible_sphere_centres_project_inside_mask_box() -> None:
    """Projected centres of unoccluded spheres fall inside their masks."""
    checked = 0
    resolution = 32
    for seed in range(6):
        scene = render_scene(seed, resolution)
        for k in np.flatnonzero(scene["shape"] == clevr_like.SHAPES.index("sphere")):
            alone = sum(
                math.isfinite(_object_hits(scene, r, c, resolution)[k])
                for r in range(resolution)
                for c in range(resolution)
            )
            if alone < 12 or alone != scene["num_pixels"][k]:
                continue
            rows, cols = np.nonzero(scene["segmentation"] == k + 1)
            col, row, depth = scene["pixel_coords"][k]
            assert cols.min() <= col <= cols.max() and rows.min() <= row <= rows.max()
            assert scene["segmentation"][round(row), round(col)] == k + 1
            assert depth > 0
            checked += 1
    assert checked > 0


def _ground_in_shadow(scene: dict[str, np.ndarray], row: int, col: int, resolution: int) -> bool:
    """Whether the ground point seen by a pixel is hidden from the key light by any object."""
    eye, d = _reference_ray(row, col, resolution)
    t = -eye[2] / d[2]
    point = [eye[0] + t * d[0], eye[1] + t * d[1], 1e-4]
    light = [float(v) for v in clevr_like.KEY_LIGHT]
    return any(
        math.isfinite(_scalar_hit(scene, k, point, light)) for k in range(len(scene["shape"]))
    )


def test_clevr_cast_shadows_darken_the_ground() -> None:
    """Ground points blocked from the key light are darker than all lit ones."""
    resolution = 32
    for seed in range(3):
        scene = render_scene(seed, resolution, min_objects=6, max_objects=10)
        brightness = scene["image"].astype(np.float64).mean(axis=-1)
        ground = np.argwhere(scene["segmentation"] == 0)
        in_shadow = np.array([_ground_in_shadow(scene, r, c, resolution) for r, c in ground])
        assert 0 < in_shadow.sum() < len(ground)
        shadow_values = brightness[tuple(ground[in_shadow].T)]
        lit_values = brightness[tuple(ground[~in_shadow].T)]
        assert shadow_values.max() < lit_values.min()


def test_clevr_colours_match_attributes() -> None:
    """The ground is grey and rubber objects look closest to their colour."""
    checked = 0
    palette = clevr_like.COLOR_RGB / np.linalg.norm(clevr_like.COLOR_RGB, axis=1, keepdims=True)
    for seed in range(6):
        scene = render_scene(seed, 64)
        image = scene["image"].astype(np.float64)
        ground = image[scene["segmentation"] == 0]
        assert np.all(ground[:, 0] == ground[:, 1]) and np.all(ground[:, 1] == ground[:, 2])
        for k in range(len(scene["shape"])):
            if scene["material"][k] != 0 or scene["num_pixels"][k] < 10:
                continue
            mean = image[scene["segmentation"] == k + 1].mean(axis=0)
            assert np.argmax(palette @ mean / np.linalg.norm(mean)) == scene["color"][k]
            checked += 1
    assert checked > 0


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(seed=0, resolution=15),
        dict(seed=0, min_objects=0),
        dict(seed=0, min_objects=5, max_objects=4),
        dict(seed=0, max_objects=11),
        dict(seed=-1),
    ],
)
def test_clevr_bad_input_raises(kwargs: dict) -> None:
    """Invalid render_scene arguments raise ValueError."""
    with pytest.raises(ValueError):
        render_scene(**kwargs)


# ---------------------------------------------------------------- 2D shapes


def test_shape_masks_have_expected_geometry() -> None:
    """Shape masks have the documented sizes, fill their boxes and translate."""
    square = shape_mask(0, 32, (0, 0))
    assert square.sum() == 13 * 13 and square[:13, :13].all()
    up = shape_mask(1, 32, (0, 0))[:9, :17]
    np.testing.assert_array_equal(up.sum(axis=1), 2 * np.arange(9) + 1)
    assert up[0, 8] and up.sum() == shape_mask(1, 32, (0, 0)).sum()
    np.testing.assert_array_equal(shape_mask(2, 32, (0, 0))[:9, :17], up[::-1])
    circle = shape_mask(3, 32, (0, 0))[:13, :13]
    np.testing.assert_array_equal(circle, circle.T)
    np.testing.assert_array_equal(circle, circle[::-1])
    assert circle[6].all() and not circle[0, 0]
    for resolution in (16, 32, 48, 64):
        for shape_id, name in enumerate(shapes.SHAPE_NAMES):
            height, width = shapes.shape_extent(shape_id, resolution)
            mask = shape_mask(shape_id, resolution, (0, 0))
            rows, cols = np.nonzero(mask)
            assert (rows.min(), cols.min()) == (0, 0), (name, resolution)
            assert (rows.max() + 1, cols.max() + 1) == (height, width), (name, resolution)
            moved = shape_mask(shape_id, resolution, (resolution - height, resolution - width))
            corner = moved[resolution - height :, resolution - width :]
            np.testing.assert_array_equal(corner, mask[:height, :width])
            assert moved.sum() == mask.sum()
        masks = np.stack([shape_mask(i, resolution, (0, 0)) for i in range(10)])
        assert len({m.tobytes() for m in masks}) == 10, resolution


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_shapes_variant_dtypes_and_ranges(name: str) -> None:
    """Every preset yields the documented channels, dtypes and value ranges."""
    kwargs = dict(VARIANTS[name])
    out = render_shapes(1, **kwargs)
    res = kwargs.get("resolution", 32)
    channels = 4 if kwargs.get("depth") else 3 if kwargs.get("rgb") else 1
    assert out["image"].shape == (res, res, channels) and out["image"].dtype == np.float32
    assert out["labels"].shape == (res, res) and out["labels"].dtype == np.int32
    assert out["shape"].dtype == np.int32
    np.testing.assert_array_equal(out["shape"], kwargs["shape_ids"])
    assert out["image"].min() >= 0.0 and out["image"].max() <= 1.0
    assert out["labels"].min() >= -1 and out["labels"].max() <= len(kwargs["shape_ids"])


def test_shapes_is_deterministic_per_seed() -> None:
    """The same seed gives identical arrays and another seed a different image."""
    a, b, c = render_shapes(4, rgb=True), render_shapes(4, rgb=True), render_shapes(5, rgb=True)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["image"], c["image"])


def _coverage(out: dict[str, np.ndarray], resolution: int) -> np.ndarray:
    """Object masks [n, res, res] rebuilt one shape at a time from the returned positions."""
    return np.stack(
        [shape_mask(s, resolution, tl) for s, tl in zip(out["shape"], out["top_left"], strict=True)]
    )


@pytest.mark.parametrize("resolution", [16, 32, 64])
def test_shapes_labels_mark_overlaps(resolution: int) -> None:
    """Labels are -1 exactly where two or more independently drawn shapes overlap."""
    overlaps = 0
    for seed in range(30):
        out = render_shapes(seed, (0, 1, 2, 3), resolution)
        masks = _coverage(out, resolution)
        count = masks.sum(axis=0)
        np.testing.assert_array_equal(out["labels"] == -1, count >= 2)
        np.testing.assert_array_equal(out["labels"] == 0, count == 0)
        for k in range(4):
            alone = masks[k] & (count == 1)
            np.testing.assert_array_equal(out["labels"] == k + 1, alone)
        np.testing.assert_array_equal(out["image"][..., 0], (count > 0).astype(np.float32))
        overlaps += int((count >= 2).any())
    assert overlaps > 0


def test_shapes_rgb_paints_later_objects_on_top() -> None:
    """RGB pixels take the colour of the last object covering them."""
    out = render_shapes(2, shape_ids=(0, 3, 4, 7, 9), rgb=True, num_colors=7)
    masks = _coverage(out, 32)
    colours = shapes.palette(7)[out["color"]]
    for r in range(32):
        for c in range(32):
            covering = [k for k in range(5) if masks[k, r, c]]
            expected = colours[covering[-1]] if covering else np.zeros(3)
            np.testing.assert_array_equal(out["image"][r, c], expected)


def test_shapes_depth_resolves_occlusion() -> None:
    """With depth the nearest covering object owns the label, colour and depth."""
    occluded = 0
    for seed in range(20):
        out = render_shapes(seed, rgb=True, depth=True)
        masks = _coverage(out, 32)
        np.testing.assert_allclose(np.sort(out["depth"]), np.arange(1, 5) / 4)
        assert out["labels"].min() >= 0
        for r, c in np.argwhere(masks.any(axis=0)):
            covering = [k for k in range(4) if masks[k, r, c]]
            nearest = min(covering, key=lambda k: out["depth"][k])
            occluded += len(covering) > 1
            assert out["labels"][r, c] == nearest + 1
            assert out["image"][r, c, 3] == out["depth"][nearest]
            np.testing.assert_array_equal(
                out["image"][r, c, :3], shapes.palette(5)[out["color"][nearest]]
            )
        assert np.all(out["image"][~masks.any(axis=0)] == 0)
    assert occluded > 0


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(shape_ids=(0, 10)),
        dict(shape_ids=(-1,)),
        dict(shape_ids=()),
        dict(resolution=15),
        dict(depth=True),
        dict(rgb=True, num_colors=0),
        dict(seed=-3),
    ],
)
def test_shapes_bad_input_raises(kwargs: dict) -> None:
    """Invalid render_shapes arguments raise ValueError."""
    kwargs = {"seed": 0, **kwargs}
    with pytest.raises(ValueError):
        render_shapes(**kwargs)


def test_shape_mask_outside_image_raises() -> None:
    """A shape placed partly outside the image raises ValueError."""
    with pytest.raises(ValueError):
        shape_mask(0, 32, (20, 0))
    with pytest.raises(ValueError):
        shape_mask(0, 32, (0, -1))
