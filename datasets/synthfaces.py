"""synthfaces: the embedded default world of procedurally rendered faces.

Every image is drawn by a vectorised numpy renderer from a handful of latent
parameters (pose, face shape, skin and hair colour, expression, glasses,
background, lighting, sensor noise), so the dataset needs no download and is
bit-for-bit reproducible from a seed.

Attributes: targets `smiling` and `eyeglasses`; sensitive `skin_tone`
(light / medium / dark) and `hair_length` (short / long).

Three knobs make the world unfair, each an option of `load` with a default:

- group imbalance: the training split over-represents light skin and long
  hair (`group_props`, `long_hair_prop`);
- target-group correlation: in the training split smiling and glasses are
  more frequent in some groups (`smiling_rate`, `smiling_shift_long_hair`,
  `eyeglasses_rate`), so group membership is a tempting shortcut;
- group-dependent difficulty: the visual cue of the targets (mouth
  curvature, mouth and frame contrast) is fainter for darker skin
  (`cue_strength`), and training labels can be flipped per group
  (`label_noise`).

Validation and test splits are balanced over every skin x hair x smiling x
eyeglasses cell, so per-group metrics are measured on equal footing.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from fairfacebench.data import Attribute, DataError, LoadedDataset, Split, TaskSpec, UnlabeledPool
from fairfacebench.datasets.base import DatasetPlugin
from fairfacebench.hookspecs import hookimpl

# Bump whenever the renderer or sampling changes, so cached or recorded runs are not mixed up.
VERSION = 2  # 2: smile bend doubled, so the default budget learns the cue (v1 stayed near chance under group balancing)

ATTRIBUTES = {
    "smiling": Attribute("smiling", ("no", "yes")),
    "eyeglasses": Attribute("eyeglasses", ("no", "yes")),
    "skin_tone": Attribute("skin_tone", ("light", "medium", "dark")),
    "hair_length": Attribute("hair_length", ("short", "long")),
}

# Axis order of the joint label distribution.
LABEL_ORDER = ("skin_tone", "hair_length", "smiling", "eyeglasses")

TASKS = [
    TaskSpec("smiling/skin_tone", "smiling", ("skin_tone",), "smiling vs not, fairness across three skin tones"),
    TaskSpec("eyeglasses/skin_tone", "eyeglasses", ("skin_tone",), "glasses vs none, fairness across three skin tones"),
    TaskSpec("smiling/hair_length", "smiling", ("hair_length",), "smiling vs not, fairness across short / long hair"),
    TaskSpec(
        "smiling/skin_tone+hair_length",
        "smiling",
        ("skin_tone", "hair_length"),
        "smiling vs not, fairness across the six skin tone x hair length groups",
    ),
]

DEFAULT_OPTIONS: dict[str, Any] = {
    "seed": 0,
    "n_train": 4000,
    "n_val": 1000,
    "n_test": 2000,
    # P(skin_tone) in train: dark skin is a 10% minority.
    "group_props": (0.6, 0.3, 0.1),
    # P(hair_length = long) in train.
    "long_hair_prop": 0.7,
    # P(smiling | skin_tone) in train before the hair shift below: smiling is rare among the minority.
    "smiling_rate": (0.65, 0.5, 0.3),
    # Added to P(smiling) for long hair, subtracted for short hair (train only).
    "smiling_shift_long_hair": 0.1,
    # P(eyeglasses | skin_tone) in train.
    "eyeglasses_rate": (0.4, 0.3, 0.2),
    # Amplitude and contrast of the target cues per skin tone, in every split.
    "cue_strength": (1.0, 0.7, 0.5),
    # Probability of flipping each target label per skin tone (train only).
    "label_noise": (0.0, 0.0, 0.0),
    # Balance val and test over all attribute cells (False: they follow the train distribution).
    "balanced_eval": True,
    # Unlabeled pool (`pool`): size and the shares of planted near-duplicates and non-faces.
    "n_pool": 3000,
    "pool_duplicate_frac": 0.10,
    "pool_offdomain_frac": 0.15,
}

# Seed-sequence streams: each split and each pool draws from its own stream of the same seed.
STREAMS = {"train": 1, "val": 2, "test": 3, "pool": 11, "captioned": 21}

SKIN_RGB = np.array([[232, 196, 170], [190, 140, 100], [105, 70, 50]], np.float32)
HAIR_RGB = np.array(
    [[30, 25, 22], [70, 45, 30], [115, 75, 45], [205, 170, 110], [140, 60, 35], [165, 165, 165]], np.float32
)
FRAME_RGB = np.array([[20, 20, 20], [85, 55, 35], [30, 35, 80], [100, 25, 30], [110, 110, 115]], np.float32)
OFFDOMAIN_KINDS = ("stripes", "checkerboard", "shapes", "texture", "noise")

# Pixels rendered per vectorised chunk: small enough for the working arrays to stay in cache.
CHUNK_PIXELS = 64 * 64 * 32


# ---------------------------------------------------------------- options


def resolve_options(options: dict[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with `options`, validated; unknown names are an error."""
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise DataError(f"synthfaces: unknown option(s) {unknown}; valid options are {sorted(DEFAULT_OPTIONS)}")
    opts = {**DEFAULT_OPTIONS, **options}
    n_skin = ATTRIBUTES["skin_tone"].n
    for key in ("group_props", "smiling_rate", "eyeglasses_rate", "cue_strength", "label_noise"):
        values = tuple(float(v) for v in opts[key])
        if len(values) != n_skin or not all(0.0 <= v <= 1.0 for v in values):
            raise DataError(
                f"synthfaces: option '{key}' must be {n_skin} numbers in [0, 1] (light, medium, dark), got {opts[key]}"
            )
        opts[key] = values
    if abs(sum(opts["group_props"]) - 1.0) > 1e-6:
        raise DataError(f"synthfaces: option 'group_props' must sum to 1, got {opts['group_props']}")
    for key in ("long_hair_prop", "pool_duplicate_frac", "pool_offdomain_frac"):
        if not 0.0 <= float(opts[key]) <= 1.0:
            raise DataError(f"synthfaces: option '{key}' must be in [0, 1], got {opts[key]}")
    if opts["pool_duplicate_frac"] > (1.0 - opts["pool_offdomain_frac"]) / 2:
        raise DataError("synthfaces: 'pool_duplicate_frac' may be at most half the face share of the pool")
    for key in ("seed", "n_train", "n_val", "n_test", "n_pool"):
        if int(opts[key]) < 0:
            raise DataError(f"synthfaces: option '{key}' must be a non-negative integer, got {opts[key]}")
        opts[key] = int(opts[key])
    return opts


# ---------------------------------------------------------------- labels


def joint_probabilities(opts: dict[str, Any], balanced: bool) -> np.ndarray:
    """P(skin_tone, hair_length, smiling, eyeglasses) as an array indexed in LABEL_ORDER."""
    shape = tuple(ATTRIBUTES[a].n for a in LABEL_ORDER)
    if balanced:
        return np.full(shape, 1.0 / np.prod(shape))
    p_skin = np.asarray(opts["group_props"])
    p_hair = np.array([1.0 - opts["long_hair_prop"], opts["long_hair_prop"]])
    shift = opts["smiling_shift_long_hair"] * np.array([-1.0, 1.0])
    p_smile = np.clip(np.asarray(opts["smiling_rate"])[:, None] + shift[None, :], 0.0, 1.0)
    p_glasses = np.asarray(opts["eyeglasses_rate"])
    smile = np.stack([1.0 - p_smile, p_smile], axis=-1)
    glasses = np.stack([1.0 - p_glasses, p_glasses], axis=-1)
    return (
        p_skin[:, None, None, None]
        * p_hair[None, :, None, None]
        * smile[:, :, :, None]
        * glasses[:, None, None, :]
    )


def quota_counts(p: np.ndarray, n: int) -> np.ndarray:
    """Integer cell counts summing to n that follow p (largest-remainder rounding)."""
    exact = p.ravel() / p.sum() * n
    counts = np.floor(exact).astype(np.int64)
    # Stable sort: ties go to the lower cell index, so the result is deterministic.
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts.reshape(p.shape)


def sample_labels(rng: np.random.Generator, n: int, joint: np.ndarray) -> dict[str, np.ndarray]:
    """n label rows whose cell counts are the quotas of `joint`, in random order."""
    counts = quota_counts(joint, n)
    cells = rng.permutation(np.repeat(np.arange(counts.size), counts.ravel()))
    codes = np.unravel_index(cells, joint.shape)
    return {name: c.astype(np.int64) for name, c in zip(LABEL_ORDER, codes)}


def flip_labels(
    rng: np.random.Generator, labels: dict[str, np.ndarray], noise: tuple[float, ...]
) -> dict[str, np.ndarray]:
    """Copy of labels with each binary target flipped with the skin tone's noise rate."""
    rate = np.asarray(noise)[labels["skin_tone"]]
    noisy = dict(labels)
    for target in ("smiling", "eyeglasses"):
        noisy[target] = np.where(rng.random(len(rate)) < rate, 1 - labels[target], labels[target])
    return noisy


# ---------------------------------------------------------------- latent parameters


def sample_params(
    rng: np.random.Generator, labels: dict[str, np.ndarray], cue_strength: tuple[float, ...]
) -> dict[str, np.ndarray]:
    """Latent rendering parameters of one face per label row.

    Lengths are in face units (face half-height = 1) except the pose, which
    is in image units ([-1, 1] across the image).  Colours are 0..255 RGB.
    """
    n = len(labels["skin_tone"])

    def u(lo: float, hi: float) -> np.ndarray:
        return rng.uniform(lo, hi, n).astype(np.float32)

    def rgb(palette: np.ndarray, spread: float) -> np.ndarray:
        base = palette[rng.integers(0, len(palette), n)]
        return base * rng.uniform(1 - spread, 1 + spread, (n, 1)) + rng.normal(0, 4, (n, 3))

    skin = SKIN_RGB[labels["skin_tone"]] * rng.uniform(0.92, 1.08, (n, 1)) + rng.normal(0, 4, (n, 3))
    return {
        **{k: v.copy() for k, v in labels.items()},
        "cue": np.asarray(cue_strength, np.float32)[labels["skin_tone"]],
        "cx": u(-0.12, 0.12),
        "cy": u(-0.15, 0.05),
        "scale": u(0.48, 0.62),
        "angle": u(-0.2, 0.2),
        "shear": u(-0.08, 0.08),
        "face_w": u(0.7, 0.85),
        "skin_rgb": skin.astype(np.float32),
        "hair_rgb": rgb(HAIR_RGB, 0.15).astype(np.float32),
        "hairline": u(-0.72, -0.45),
        "part_tilt": u(-0.25, 0.25),
        "bg1_rgb": rng.uniform(15, 240, (n, 3)).astype(np.float32),
        "bg2_rgb": rng.uniform(15, 240, (n, 3)).astype(np.float32),
        "bg_dir": u(0, 2 * np.pi),
        "bg_wave": u(0.0, 0.15),
        "bg_freq": u(2.0, 8.0),
        "bg_phase": u(0, 2 * np.pi),
        "cloth_rgb": rng.uniform(20, 230, (n, 3)).astype(np.float32),
        "eye_x": u(0.26, 0.34),
        "eye_y": u(-0.2, -0.08),
        "gaze": u(-0.03, 0.03),
        "brow_lift": u(0.13, 0.2),
        "brow_tilt": u(-0.25, 0.25),
        "mouth_y": u(0.4, 0.52),
        "mouth_w": u(0.22, 0.32),
        "mouth_t": u(0.03, 0.045),
        "mouth_dark": u(0.45, 0.6),
        # Curvature without a smile; a smile adds cue * smile_amp.
        "neutral_curve": u(-0.035, 0.035),
        "smile_amp": u(0.2, 0.34),
        "glasses_r": u(0.15, 0.19),
        "glasses_t": u(0.025, 0.04),
        "frame_rgb": rgb(FRAME_RGB, 0.1).astype(np.float32),
        "frame_alpha": u(0.75, 0.95),
        "light_gain": u(0.75, 1.15),
        "light_gx": u(-0.25, 0.25),
        "light_gy": u(-0.25, 0.25),
        "noise_sigma": u(2.0, 8.0),
    }


# ---------------------------------------------------------------- renderer
#
# Every drawing primitive works in place on buffers that one `_Canvas`
# allocates once per call: fresh temporaries per chunk made the kernel zero
# gigabytes of pages and tripled the render time.


def _coverage(signed: np.ndarray, px: np.ndarray) -> np.ndarray:
    """In place: anti-aliased coverage (0..1) of the region where `signed` > 0, one pixel ramp."""
    signed /= px
    signed += 0.5
    return np.clip(signed, 0.0, 1.0, out=signed)


class _Canvas:
    """Scratch planes (B, H, W) and a channel-first image (3, B, H, W) reused across chunks.

    Channel-first keeps numpy's inner loops long and contiguous.
    """

    def __init__(self, batch: int, size: int) -> None:
        coords = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
        self.size = size
        self.x, self.y = coords[None, None, :], coords[None, :, None]
        # Flat storage, so that a smaller last chunk still gets contiguous views.
        self.plane_store = np.empty(7 * batch * size * size, np.float32)
        self.rgb_store = np.empty(2 * 3 * batch * size * size, np.float32)

    def render(self, p: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
        """Float image (B, H, W, 3) in 0..255 of one chunk of faces; p holds (B,) and (B, 3) arrays."""
        b = len(p["scale"])
        s = {k: v[:, None, None] if v.ndim == 1 else v.T[:, :, None, None] for k, v in p.items()}
        shape = (b, self.size, self.size)
        u, v, au, face, m, t1, t2 = self.plane_store[: 7 * np.prod(shape)].reshape(7, *shape)
        img, tmp = self.rgb_store[: 6 * np.prod(shape)].reshape(2, 3, *shape)
        x, y = self.x, self.y
        px = 2.0 / (self.size * s["scale"])

        def paint(mask: np.ndarray, rgb: Any) -> None:
            np.subtract(rgb, img, out=tmp)
            np.multiply(tmp, mask, out=tmp)
            np.add(img, tmp, out=img)

        def ellipse(uu: np.ndarray, cu: Any, cv: Any, ru: Any, rv: Any, out: np.ndarray) -> np.ndarray:
            """Coverage of an axis-aligned ellipse in face units (approximate signed distance)."""
            np.subtract(uu, cu, out=out)
            out /= ru
            np.square(out, out=out)
            np.subtract(v, cv, out=t1)
            np.divide(t1, rv, out=t1)
            np.square(t1, out=t1)
            out += t1
            np.sqrt(out, out=out)
            np.subtract(1.0, out, out=out)
            out *= np.minimum(ru, rv).astype(np.float32)
            return _coverage(out, px)

        def band(dist: np.ndarray, half: Any) -> np.ndarray:
            """In place: coverage of |dist| < half."""
            np.abs(dist, out=dist)
            np.subtract(half, dist, out=dist)
            return _coverage(dist, px)

        # Background: a two-colour gradient with a faint wave, different per image.
        np.add(np.cos(s["bg_dir"]) * x, np.sin(s["bg_dir"]) * y, out=m)
        m *= 0.5
        m += 0.5
        np.clip(m, 0.0, 1.0, out=m)
        np.multiply(s["bg_freq"], x - y, out=t1)
        t1 += s["bg_phase"]
        np.sin(t1, out=t1)
        t1 *= s["bg_wave"]
        t1 += 1.0
        m *= t1
        np.multiply(m, s["bg2_rgb"] - s["bg1_rgb"], out=img)
        img += s["bg1_rgb"]

        # Face coordinates: translate, rotate, shear, scale (face half-height = 1).
        cos, sin = np.cos(s["angle"]) / s["scale"], np.sin(s["angle"]) / s["scale"]
        dx, dy = x - s["cx"], y - s["cy"]
        np.add(-sin * dx, cos * dy, out=v)
        np.add(cos * dx, sin * dy, out=u)
        np.multiply(s["shear"], v, out=t1)
        u += t1
        np.abs(u, out=au)
        fw = s["face_w"]

        ellipse(u, 0.0, 0.45, fw * 1.45, 1.55, m)
        m *= s["hair_length"]
        paint(m, s["hair_rgb"])
        paint(ellipse(u, 0.0, 2.05, 1.7, 0.85, m), s["cloth_rgb"])
        np.multiply(_coverage(np.subtract(0.3, au, out=m), px), _coverage(np.subtract(v, 0.5, out=t2), px), out=m)
        m *= _coverage(np.subtract(1.7, v, out=t2), px)
        paint(m, 0.82 * s["skin_rgb"])
        ellipse(u, 0.0, -0.1, fw * 1.12, 1.08, m)
        m *= _coverage(np.subtract(0.05, v, out=t2), px)
        paint(m, s["hair_rgb"])
        paint(ellipse(u, 0.0, 0.0, fw, 1.0, face), s["skin_rgb"])
        np.multiply(s["part_tilt"], u, out=m)
        m += s["hairline"]
        m -= v
        _coverage(m, px)
        m *= face
        paint(m, s["hair_rgb"])

        # Eyes are mirror images, so one mask over |u| draws both.
        ex, ey = s["eye_x"], s["eye_y"]
        np.subtract(au, ex, out=t2)
        np.multiply(s["brow_tilt"], t2, out=m)
        m += ey - s["brow_lift"]
        np.subtract(v, m, out=m)
        band(m, 0.03)
        m *= band(t2, 0.12)
        paint(m, 0.6 * s["hair_rgb"])
        paint(ellipse(au, ex, ey, 0.12, 0.065, m), np.float32(240.0))
        np.abs(np.subtract(u, s["gaze"], out=t2), out=t2)
        paint(ellipse(t2, ex, ey, 0.05, 0.05, m), np.float32(25.0))
        ellipse(u, 0.0, 0.18, 0.06, 0.11, m)
        m *= 0.5
        paint(m, 0.75 * s["skin_rgb"])

        # Mouth: a parabola whose mean height is fixed, so only its bend says "smiling".
        curve = s["neutral_curve"] + s["smiling"] * s["cue"] * s["smile_amp"]
        mw = s["mouth_w"]
        np.divide(u, mw, out=t2)
        np.square(t2, out=t2)
        np.subtract(1.0 / 3.0, t2, out=t2)
        t2 *= curve
        t2 += s["mouth_y"]
        np.subtract(v, t2, out=m)
        band(m, s["mouth_t"])
        m *= _coverage(np.subtract(mw, au, out=t2), px)
        m *= s["mouth_dark"] * (0.5 + 0.5 * s["cue"])
        paint(m, s["skin_rgb"] * np.array([0.55, 0.35, 0.35], np.float32)[:, None, None, None])

        # Glasses: two rings and a bridge; frame opacity carries the cue strength.
        np.subtract(au, ex, out=m)
        np.square(m, out=m)
        np.subtract(v, ey, out=t2)
        t2 /= 0.85
        np.square(t2, out=t2)
        m += t2
        np.sqrt(m, out=m)
        m -= s["glasses_r"]
        band(m, s["glasses_t"])
        band(np.subtract(v, ey, out=t2), s["glasses_t"])
        t2 *= _coverage(np.subtract(ex - s["glasses_r"] + px, au, out=t1), px)
        np.maximum(m, t2, out=m)
        m *= s["eyeglasses"] * s["cue"] * s["frame_alpha"]
        paint(m, s["frame_rgb"])

        # Lighting: a global gain and a directional gradient, then sensor noise
        # (uniform with std noise_sigma: five times cheaper to draw than Gaussian).
        np.add(s["light_gx"] * x, s["light_gy"] * y, out=m)
        m += 1.0
        m *= s["light_gain"]
        img *= m
        rng.random(out=tmp, dtype=np.float32)
        tmp -= 0.5
        tmp *= np.sqrt(12.0, dtype=np.float32) * s["noise_sigma"]
        img += tmp
        img += 0.5
        return np.clip(img, 0.0, 255.0, out=img).transpose(1, 2, 3, 0)


def render_faces(params: dict[str, np.ndarray], size: int, seed: int) -> np.ndarray:
    """uint8 faces (N, size, size, 3) rendered natively at `size`; `seed` drives the sensor noise."""
    f32 = {k: np.asarray(v, np.float32) for k, v in params.items()}
    n = len(f32["scale"])
    out = np.empty((n, size, size, 3), np.uint8)
    rng = np.random.default_rng(seed)
    step = max(1, CHUNK_PIXELS // (size * size))
    canvas = _Canvas(min(step, n), size)
    for start in range(0, n, step):
        # Casting on assignment truncates; the +0.5 above makes it round.
        out[start : start + step] = canvas.render({k: v[start : start + step] for k, v in f32.items()}, rng)
    return out


# ---------------------------------------------------------------- off-domain images


def render_offdomain(rng: np.random.Generator, kinds: np.ndarray, size: int) -> np.ndarray:
    """Non-face images (stripes, checkerboards, shapes, textures, noise), one per kind code."""
    n = len(kinds)
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    x, y = coords[None, None, :], coords[None, :, None]
    px = np.float32(2.0 / size)
    out = np.empty((n, size, size, 3), np.uint8)

    def col(*shape: int) -> np.ndarray:
        return rng.uniform(0, 255, (*shape, 3)).astype(np.float32)[:, None, None, :]

    def rotated(m: int) -> tuple[np.ndarray, np.ndarray]:
        a = rng.uniform(0, np.pi, (m, 1, 1)).astype(np.float32)
        return np.cos(a) * x + np.sin(a) * y, -np.sin(a) * x + np.cos(a) * y

    for code, kind in enumerate(OFFDOMAIN_KINDS):
        idx = np.flatnonzero(kinds == code)
        m = len(idx)
        if m == 0:
            continue
        if kind == "stripes":
            a, _ = rotated(m)
            freq = rng.uniform(6, 30, (m, 1, 1)).astype(np.float32)
            mask = _coverage(np.sin(freq * a), px * freq)
            c1 = col(m)
            img = c1 + mask[..., None] * (col(m) - c1)
        elif kind == "checkerboard":
            a, b = rotated(m)
            freq = rng.uniform(5, 20, (m, 1, 1)).astype(np.float32)
            mask = _coverage(np.sin(freq * a) * np.sin(freq * b), px * freq)
            c1 = col(m)
            img = c1 + mask[..., None] * (col(m) - c1)
        elif kind == "shapes":
            img = np.broadcast_to(col(m), (m, size, size, 3)).copy()
            for _ in range(6):
                cx, cy = rng.uniform(-0.9, 0.9, (2, m, 1, 1)).astype(np.float32)
                r = rng.uniform(0.1, 0.45, (m, 1, 1)).astype(np.float32)
                is_box = rng.random((m, 1, 1)) < 0.5
                dist = np.where(is_box, np.maximum(np.abs(x - cx), np.abs(y - cy)), np.hypot(x - cx, y - cy))
                img += _coverage(r - dist, px)[..., None] * (col(m) - img)
        elif kind == "texture":
            img = np.zeros((m, size, size, 3), np.float32)
            for _ in range(4):
                a, b = rotated(m)
                freq = rng.uniform(2, 14, (m, 1, 1)).astype(np.float32)
                img += np.sin(freq * a + 3.0 * np.sin(freq * 0.5 * b))[..., None] * col(m) / 8.0
            img += col(m) * 0.5
        else:
            cells = int(rng.integers(3, 17))
            grid = rng.uniform(0, 255, (m, cells, cells, 3)).astype(np.float32)
            pick = np.arange(size) * cells // size
            img = grid[:, pick][:, :, pick]
        img += rng.normal(0, 4, img.shape).astype(np.float32)
        out[idx] = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return out


# ---------------------------------------------------------------- pools


def _near_duplicates(rng: np.random.Generator, params: dict[str, np.ndarray], size: int) -> np.ndarray:
    """Re-render faces with a tiny pose / lighting jitter, new noise and a JPEG round trip."""
    n = len(params["scale"])
    jittered = dict(params)
    for key, spread in (("cx", 0.01), ("cy", 0.01), ("angle", 0.01)):
        jittered[key] = params[key] + rng.normal(0, spread, n)
    jittered["scale"] = params["scale"] * (1 + rng.normal(0, 0.01, n))
    jittered["light_gain"] = params["light_gain"] * (1 + rng.normal(0, 0.02, n))
    images = render_faces(jittered, size, int(rng.integers(2**63)))
    return np.stack([_jpeg(img, int(q)) for img, q in zip(images, rng.integers(60, 90, n))])


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """JPEG-compress and decode one image."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def make_pool(opts: dict[str, Any], size: int) -> UnlabeledPool:
    """Unlabeled faces from the training distribution plus planted near-duplicates and non-faces."""
    rng = np.random.default_rng([opts["seed"], STREAMS["pool"]])
    n = opts["n_pool"]
    n_off = round(n * opts["pool_offdomain_frac"])
    n_dup = round(n * opts["pool_duplicate_frac"])
    n_orig = n - n_off - n_dup

    labels = sample_labels(rng, n_orig, joint_probabilities(opts, balanced=False))
    params = sample_params(rng, labels, opts["cue_strength"])
    originals = render_faces(params, size, int(rng.integers(2**63)))
    sources = rng.choice(n_orig, n_dup, replace=False)
    duplicates = _near_duplicates(rng, {k: v[sources] for k, v in params.items()}, size)
    kinds = rng.integers(0, len(OFFDOMAIN_KINDS), n_off)
    offdomain = render_offdomain(rng, kinds, size)

    # Shuffle originals, duplicates and non-faces together; map sources to shuffled positions.
    order = rng.permutation(n)
    position = np.empty(n, np.int64)
    position[order] = np.arange(n)
    images = np.concatenate([originals, duplicates, offdomain])[order]
    duplicate_of = np.concatenate([np.full(n_orig, -1), position[sources], np.full(n_off, -1)])[order]
    is_face = np.concatenate([np.ones(n_orig + n_dup, bool), np.zeros(n_off, bool)])[order]
    hidden: dict[str, np.ndarray] = {"is_face": is_face, "duplicate_of": duplicate_of}
    for name in LABEL_ORDER:
        hidden[name] = np.concatenate([labels[name], labels[name][sources], np.full(n_off, -1)])[order]
    report = {
        "n": n,
        "faces": n_orig + n_dup,
        "originals": n_orig,
        "near_duplicates": n_dup,
        "off_domain": n_off,
        "off_domain_kinds": {k: int((kinds == i).sum()) for i, k in enumerate(OFFDOMAIN_KINDS)},
        "seed": opts["seed"],
        "size": size,
        "version": VERSION,
    }
    ids = np.array([f"synth-pool-{i:06d}" for i in range(n)])
    return UnlabeledPool("synthfaces-pool", images, ids, hidden=hidden, report=report)


SMILE_WORDS = (
    ("not smiling", "with a neutral expression", "with a straight face"),
    ("smiling", "with a smile", "grinning"),
)
GLASSES_WORDS = (("without glasses", "not wearing glasses"), ("wearing glasses", "with eyeglasses"))
CAPTION_TEMPLATES = (
    "a photo of a person {smile}, with {skin} skin and {hair} hair, {glasses}",
    "a {skin}-skinned person {smile}, {glasses}",
    "a close-up photo of a person with {hair} hair and {skin} skin {smile}",
    "a photo of a person with {skin} skin {glasses}, {smile}",
    "a face with {skin} skin, {hair} hair, {glasses}, {smile}",
    "a {hair}-haired person {smile}",
)
OFFDOMAIN_CAPTIONS = {
    "stripes": ("a photo of stripes", "a striped pattern"),
    "checkerboard": ("a photo of a checkerboard", "a checkered pattern"),
    "shapes": ("a picture of colourful shapes", "random circles and squares"),
    "texture": ("a photo of a wavy texture", "an abstract swirling texture"),
    "noise": ("a picture of coloured noise", "blocky random pixels"),
}


def caption(rng: np.random.Generator, skin: int, hair: int, smiling: int, eyeglasses: int) -> str:
    """One randomly phrased caption describing a face's attributes in words."""
    words = {
        "skin": ATTRIBUTES["skin_tone"].classes[skin],
        "hair": ATTRIBUTES["hair_length"].classes[hair],
        "smile": SMILE_WORDS[smiling][rng.integers(len(SMILE_WORDS[smiling]))],
        "glasses": GLASSES_WORDS[eyeglasses][rng.integers(len(GLASSES_WORDS[eyeglasses]))],
    }
    return CAPTION_TEMPLATES[rng.integers(len(CAPTION_TEMPLATES))].format(**words)


def captioned_pool(n: int, size: int = 64, seed: int = 0, offdomain_frac: float = 0.1) -> UnlabeledPool:
    """Captioned faces with balanced random attributes, plus captioned non-faces, for a tiny CLIP.

    Drawn from its own seed stream, disjoint from the benchmark splits and
    from `make_pool`; the targets' cues have the default per-group strength.
    """
    rng = np.random.default_rng([seed, STREAMS["captioned"]])
    n_off = round(n * offdomain_frac)
    n_face = n - n_off
    labels = sample_labels(rng, n_face, joint_probabilities(DEFAULT_OPTIONS, balanced=True))
    faces = render_faces(sample_params(rng, labels, DEFAULT_OPTIONS["cue_strength"]), size, int(rng.integers(2**63)))
    kinds = rng.integers(0, len(OFFDOMAIN_KINDS), n_off)
    captions = [caption(rng, *(int(labels[a][i]) for a in LABEL_ORDER)) for i in range(n_face)]
    captions += [str(rng.choice(OFFDOMAIN_CAPTIONS[OFFDOMAIN_KINDS[k]])) for k in kinds]

    order = rng.permutation(n)
    images = np.concatenate([faces, render_offdomain(rng, kinds, size)])[order]
    hidden = {"is_face": np.concatenate([np.ones(n_face, bool), np.zeros(n_off, bool)])[order]}
    for name in LABEL_ORDER:
        hidden[name] = np.concatenate([labels[name], np.full(n_off, -1)])[order]
    report = {"n": n, "faces": n_face, "off_domain": n_off, "seed": seed, "size": size, "version": VERSION}
    ids = np.array([f"synth-caption-{i:06d}" for i in range(n)])
    return UnlabeledPool(
        "synthfaces-captioned", images, ids, hidden=hidden, captions=[captions[i] for i in order], report=report
    )


# ---------------------------------------------------------------- splits and the plugin


def make_split(opts: dict[str, Any], split: str, size: int) -> tuple[Split, dict[str, np.ndarray]]:
    """One split and its true (noise-free) labels; only train carries the bias and label noise."""
    rng = np.random.default_rng([opts["seed"], STREAMS[split]])
    n = opts[f"n_{split}"]
    balanced = split != "train" and opts["balanced_eval"]
    labels = sample_labels(rng, n, joint_probabilities(opts, balanced))
    images = render_faces(sample_params(rng, labels, opts["cue_strength"]), size, int(rng.integers(2**63)))
    recorded = flip_labels(rng, labels, opts["label_noise"]) if split == "train" else labels
    ids = np.array([f"synth-{split}-{i:06d}" for i in range(n)])
    return Split(images, recorded, ids), labels


def _group_means(values: np.ndarray, group: np.ndarray, k: int) -> list[float]:
    """Mean of `values` within each of k groups, rounded (NaN for an empty group)."""
    return [round(float(values[group == g].mean()), 4) if (group == g).any() else float("nan") for g in range(k)]


def realised_bias(labels: dict[str, np.ndarray]) -> dict[str, Any]:
    """Group proportions and per-group target rates actually present in a split."""
    skin, hair = labels["skin_tone"], labels["hair_length"]
    everyone = np.zeros_like(skin)
    return {
        "n": len(skin),
        "skin_tone_props": [_group_means(skin == g, everyone, 1)[0] for g in range(3)],
        "long_hair_prop": _group_means(hair, everyone, 1)[0],
        "p_smiling_given_skin_tone": _group_means(labels["smiling"], skin, 3),
        "p_smiling_given_hair_length": _group_means(labels["smiling"], hair, 2),
        "p_eyeglasses_given_skin_tone": _group_means(labels["eyeglasses"], skin, 3),
    }


class SynthFaces(DatasetPlugin):
    """Procedurally rendered faces with configurable imbalance, correlation and difficulty."""

    name = "synthfaces"
    description = (
        "Procedurally rendered RGB faces (no download, deterministic from a seed) with configurable "
        "group imbalance, target-group correlation and group-dependent cue strength."
    )
    citation = "generated procedurally by fairbench"
    needs_root = False
    default_size = 64
    attributes = ATTRIBUTES
    tasks = TASKS

    def load(self, root: Path | None, size: int, cache_dir: Path, **options: Any) -> LoadedDataset:
        """Train / val / test splits; generation takes seconds, so nothing is cached."""
        opts = resolve_options(options)
        splits, true_labels = {}, {}
        for split in ("train", "val", "test"):
            splits[split], true_labels[split] = make_split(opts, split, size)
        train = splits["train"].labels
        flipped = {t: int((train[t] != true_labels["train"][t]).sum()) for t in ("smiling", "eyeglasses")}
        info = {
            "generator": "synthfaces",
            "version": VERSION,
            "seed": opts["seed"],
            "size": size,
            "sizes": {s: len(splits[s]) for s in splits},
            "options": {k: list(v) if isinstance(v, tuple) else v for k, v in opts.items()},
            "realised": {s: realised_bias(splits[s].labels) for s in splits},
            "train_labels_flipped": flipped,
        }
        return LoadedDataset(self.name, dict(ATTRIBUTES), splits, info)

    def pool(self, root: Path | None, size: int, cache_dir: Path, **options: Any) -> UnlabeledPool:
        """Unlabeled pool with planted near-duplicates and off-domain images (see `make_pool`)."""
        return make_pool(resolve_options(options), size)


@hookimpl
def fairfacebench_datasets():
    return [SynthFaces()]
