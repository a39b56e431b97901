"""Pictures of images, reconstructions and object masks as uint8 arrays (numpy only)."""

import colorsys

import numpy as np
from etils import epath
from PIL import Image, ImageDraw, ImageFont

MIN_TILE = 96  # Shortest side (px) of every tile once upscaled, so the saved PNG is legible.
_PAD = 2  # White pixels between tiles.
_TEXT_MARGIN = 4  # Pixels between text and the edge of its cell.
_FONT_SIZES = range(18, 8, -1)  # Largest first; the largest that fits every title is used.
Legend = tuple[str, np.ndarray, list[str]]  # Title, uint8 colours `[n, 3]`, one label each.


def palette(num_colors: int) -> np.ndarray:
    """Returns `[num_colors, 3]` uint8 colours; colour 0 (background) is black."""
    hues = np.linspace(0.0, 1.0, max(num_colors - 1, 1), endpoint=False)
    colors = [(0.0, 0.0, 0.0)] + [colorsys.hsv_to_rgb(h, 0.75, 1.0) for h in hues]
    return (np.asarray(colors[:num_colors]) * 255).astype(np.uint8)


IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])


def to_uint8(images: np.ndarray, normalization: str = "signed") -> np.ndarray:
    """Maps float images `[..., c]` ("signed": in [-1, 1]; "imagenet": mean/std, c = 3;
    "unit": in [0, 1]) to uint8."""
    images = np.asarray(images, np.float64)
    if normalization == "signed":
        unit = (images + 1.0) / 2.0
    elif normalization == "unit":
        unit = images
    else:
        unit = images * IMAGENET_STD + IMAGENET_MEAN
    return np.clip(unit * 255.0, 0, 255).round().astype(np.uint8)


def to_rgb(images: np.ndarray) -> np.ndarray:
    """Shows uint8 images `[..., c]` as RGB `[..., 3]`: grey repeated, extra channels dropped."""
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images[..., :3]


def orientation_rgb(points: np.ndarray) -> np.ndarray:
    """Colours read-out points `[..., f]` as uint8 RGB `[..., 3]`.

    Two dims (CAE phase): hue = angle, brightness = length; more (Rotating Features): the
    first three dims mapped from [-1, 1] to [0, 1].
    """
    points = np.asarray(points, np.float64)
    if points.shape[-1] == 2:
        hue = (np.arctan2(points[..., 1], points[..., 0]) / (2 * np.pi)) % 1.0
        value = np.clip(np.linalg.norm(points, axis=-1), 0.0, 1.0)
        rgb = np.vectorize(colorsys.hsv_to_rgb, otypes=[float] * 3)(hue, 1.0, value)
        unit = np.stack(rgb, axis=-1)
    else:
        unit = (points[..., :3] + 1.0) / 2.0
    return np.clip(unit * 255.0, 0, 255).round().astype(np.uint8)


def readout_panel(
    images: np.ndarray,
    reconstructions: np.ndarray | None,
    points: np.ndarray,
    clusters: np.ndarray,
    true_ids: np.ndarray,
    num_colors: int,
) -> np.ndarray:
    """One titled row per example: input, [reconstruction], GT, read-out, cluster ids; legend.

    `images`, `reconstructions`: uint8 `[b, h, w, c]`; `points`: read-out `[b, h, w, f]`;
    `clusters`, `true_ids`: int `[b, h, w]`.
    """
    colors = orientation_rgb(points)
    num_clusters = max(num_colors, int(clusters.max(initial=0)) + 1)
    rows = [
        [to_rgb(images[b])]
        + ([to_rgb(reconstructions[b])] if reconstructions is not None else [])
        + [colorize(true_ids[b], num_colors), colors[b], colorize(clusters[b], num_clusters)]
        for b in range(images.shape[0])
    ]
    recon = ["recon."] if reconstructions is not None else []
    titles = ["image", *recon, "true segments", "read-out", "clusters"]
    legends = [
        _segment_legend(num_colors),
        ("clusters:", palette(num_clusters), _ids(num_clusters)),
    ]
    return annotated_grid(rows, titles, legends)


def colorize(ids: np.ndarray, num_colors: int) -> np.ndarray:
    """Colours an integer segmentation `[..., h, w]` into `[..., h, w, 3]` uint8."""
    return palette(num_colors)[np.clip(ids, 0, num_colors - 1)]


def overlay(image: np.ndarray, ids: np.ndarray, num_colors: int, alpha: float = 0.5) -> np.ndarray:
    """Blends the coloured segmentation `[h, w]` onto a uint8 image `[h, w, 3]`."""
    mixed = (1 - alpha) * image.astype(np.float32) + alpha * colorize(ids, num_colors)
    return mixed.round().astype(np.uint8)


def grid(rows: list[list[np.ndarray]], pad: int = _PAD) -> np.ndarray:
    """Tiles equally sized uint8 images `[h, w, 3]` into one picture, row by row."""
    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y : y + h, x : x + w] = tile
    return out


def _masked(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Shows `image` `[h, w, 3]` where `mask` `[h, w]` in [0, 1] is high, white elsewhere."""
    mask = np.asarray(mask, np.float64)[..., None]
    return (mask * image + (1.0 - mask) * 255.0).round().astype(np.uint8)


def slot_panel(
    images: np.ndarray,
    masks: np.ndarray,
    true_ids: np.ndarray,
    num_true: int,
    reconstructions: np.ndarray | None = None,
    binary: np.ndarray | None = None,
) -> np.ndarray:
    """One titled row per example: input, [reconstruction], GT, predicted segmentation, slots.

    `images`, `reconstructions`: uint8 `[b, h, w, 3]`; `masks`: `[b, k, h, w]` in [0, 1]
    (each slot shown as the image seen through its mask); `binary`: optional bool
    `[b, k, h, w]` (e.g. Otsu masks), then shown as a second row ("Otsu mask") per example.
    Legends below map the GT ids (`num_true` colours) and the slot colours.
    """
    rows = []
    num_slots = masks.shape[1]
    for b in range(images.shape[0]):
        lead = [images[b]]
        if reconstructions is not None:
            lead.append(reconstructions[b])
        lead += [
            colorize(true_ids[b], num_true),
            overlay(images[b], np.argmax(masks[b], axis=0) + 1, num_slots + 1),
        ]
        scale = masks[b] / np.maximum(masks[b].max(axis=(1, 2), keepdims=True), 1e-8)
        rows.append(lead + [_masked(images[b], scale[k]) for k in range(num_slots)])
        if binary is not None:
            blank = np.full_like(images[b], 255)
            rows.append(
                [blank] * len(lead) + [_masked(images[b], binary[b, k]) for k in range(num_slots)]
            )
    recon = ["recon."] if reconstructions is not None else []
    slots = [f"slot {k + 1}" for k in range(num_slots)]
    titles = ["image", *recon, "true segments", "predicted", *slots]
    slot_colors = palette(num_slots + 1)[1:]
    legends = [_segment_legend(num_true), ("predicted slot:", slot_colors, _ids(num_slots + 1)[1:])]
    labels = ["soft mask", "Otsu mask"] * images.shape[0] if binary is not None else None
    return annotated_grid(rows, titles, legends, labels)


def _ids(num_colors: int) -> list[str]:
    """Legend labels "0", ..., "num_colors - 1" of `palette(num_colors)`."""
    return [str(i) for i in range(num_colors)]


def _segment_legend(num_colors: int) -> Legend:
    """Legend entry of ground-truth ids: `palette(num_colors)` `[n, 3]` named "bg", "1", ..."""
    return "true segments:", palette(num_colors), ["bg", *_ids(num_colors)[1:]]


def upscale(image: np.ndarray, min_side: int = MIN_TILE) -> np.ndarray:
    """Repeats each pixel of `[h, w, c]` n x n times, the least n with n * min(h, w) >= min_side."""
    n = -(-min_side // min(image.shape[:2]))
    return np.repeat(np.repeat(image, n, axis=0), n, axis=1)


def _font(titles: list[str], width: int) -> ImageFont.FreeTypeFont:
    """The largest default font in which every title fits `width` pixels (else the smallest)."""
    for size in _FONT_SIZES:
        font = ImageFont.load_default(size=size)
        if max(font.getlength(t) for t in titles) <= width - 2 * _TEXT_MARGIN:
            return font
    return font


def _line_height(font: ImageFont.FreeTypeFont) -> int:
    """Height in pixels of one line of text in `font`, margins included."""
    return int(font.size) + 2 * _TEXT_MARGIN


def _write(
    draw: ImageDraw.ImageDraw,
    xy: tuple[float, float],
    text: str,
    font: ImageFont.FreeTypeFont,
    anchor: str = "lm",
) -> None:
    """Draws black `text` anchored at `xy` (default: left edge, vertical middle)."""
    draw.text(xy, text, fill="black", font=font, anchor=anchor)


def _legend(entries: list[Legend], width: int, font: ImageFont.FreeTypeFont) -> np.ndarray:
    """White uint8 `[height, width, 3]`: per entry its title, then swatch + label pairs, wrapped."""
    line, swatch = _line_height(font), int(font.size)
    canvas = Image.new("RGB", (width, line * sum(1 + len(e[2]) for e in entries)), "white")
    draw = ImageDraw.Draw(canvas)
    y = 0
    for title, colors, labels in entries:
        _write(draw, (_TEXT_MARGIN, y + line / 2), title, font)
        x = draw.textlength(title, font=font) + 3 * _TEXT_MARGIN
        for color, label in zip(colors, labels, strict=True):
            item = swatch + draw.textlength(label, font=font) + 4 * _TEXT_MARGIN
            if x + item > width and x > 3 * _TEXT_MARGIN:  # Wrap, indented.
                x, y = 3 * _TEXT_MARGIN, y + line
            top = y + (line - swatch) // 2
            draw.rectangle((x, top, x + swatch - 1, top + swatch - 1), fill=tuple(map(int, color)))
            _write(draw, (x + swatch + _TEXT_MARGIN, y + line / 2), label, font)
            x += item
        y += line
    return np.asarray(canvas)[:y]


def annotated_grid(
    rows: list[list[np.ndarray]],
    titles: list[str],
    legends: list[Legend],
    row_labels: list[str] | None = None,
) -> np.ndarray:
    """Upscaled `grid` of uint8 `[h, w, 3]` tiles under column titles; row labels; legends below."""
    tiles = [[upscale(tile) for tile in row] for row in rows]
    h, w = tiles[0][0].shape[:2]
    font = _font(titles, w)
    line = _line_height(font)
    body = grid(tiles)
    left = 0
    if row_labels is not None:
        left = int(max(font.getlength(label) for label in row_labels)) + 2 * _TEXT_MARGIN
        body = np.concatenate([np.full((body.shape[0], left, 3), 255, np.uint8), body], axis=1)
    header = np.full((line, body.shape[1], 3), 255, np.uint8)
    legend = _legend(legends, body.shape[1], font)
    picture = Image.fromarray(np.concatenate([header, body, legend], axis=0))
    draw = ImageDraw.Draw(picture)
    for j, title in enumerate(titles):
        _write(draw, (left + _PAD + j * (w + _PAD) + w / 2, line / 2), title, font, "mm")
    for i, label in enumerate(row_labels or []):
        _write(draw, (_TEXT_MARGIN, line + _PAD + i * (h + _PAD) + h / 2), label, font)
    return np.asarray(picture)


def save_png(path: str | epath.Path, image: np.ndarray) -> None:
    """Writes a uint8 `[h, w, 3]` image to `path` (local or in a bucket), creating folders."""
    path = epath.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        Image.fromarray(image).save(f, format="PNG")
