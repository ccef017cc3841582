"""synthfaces' renderer: latent face parameters, a vectorised numpy face renderer, off-domain images."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

SKIN_RGB = np.array([[232, 196, 170], [190, 140, 100], [105, 70, 50]], np.float32)
HAIR_RGB = np.array(
    [[30, 25, 22], [70, 45, 30], [115, 75, 45], [205, 170, 110], [140, 60, 35], [165, 165, 165]], np.float32
)
FRAME_RGB = np.array([[20, 20, 20], [85, 55, 35], [30, 35, 80], [100, 25, 30], [110, 110, 115]], np.float32)
OFFDOMAIN_KINDS = ("stripes", "checkerboard", "shapes", "texture", "noise")

# Pixels rendered per vectorised chunk: small enough for the working arrays to stay in cache.
CHUNK_PIXELS = 64 * 64 * 32


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


def near_duplicates(rng: np.random.Generator, params: dict[str, np.ndarray], size: int) -> np.ndarray:
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
