"""Near-duplicate images: 256-bit perceptual hashes, their Hamming distances, groups, and label conflicts.

The hash is the DCT hash of the pHash library (Zauner, "Implementation and
Benchmarking of Perceptual Image Hash Functions", 2010, Sec. 3.1) with a
larger block: the image in grey, shrunk to 32x32, its 2-D DCT-II, the 16x16
lowest frequencies without the DC row and column, one bit per coefficient: 1
above their median.  Without the DC terms the hash is blind to a uniform
brightness shift, the median makes it blind to a contrast scale, and the 32x32
thumbnail to re-encoding and resizing.  pHash's 8x8 block (64 bits) is too
coarse for aligned faces, whose low frequencies look alike (docs/DATASETS.md).

Two images are near-duplicates when their hashes differ in at most
`threshold` bits; groups are the connected components of that relation
(union-find), so a chain a~b~c is one group even when a and c differ more.
The pairs come from an exact faiss range search over the binary codes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
from PIL import Image, ImageOps

from fairfacebench.data import DataError

HASH_VERSION = 1  # bump whenever the thumbnail or the hash changes: it is part of the hash cache's key
THUMBNAIL = 32  # pixels per side of the grey thumbnail the DCT reads
LOW = 16  # the LOW x LOW lowest frequencies after the DC row and column give the bits
BITS = LOW * LOW
DEFAULT_THRESHOLD = 48  # bits of 256: the valley between copies and distinct faces on UTKFace (docs/DATASETS.md)
OFF = "off"
POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


def dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix C (n x n): C @ x is the DCT of the column x."""
    k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    c = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    c[0] /= np.sqrt(2.0)
    return c


DCT = dct_matrix(THUMBNAIL)


def grey_thumbnail(path: str | Path) -> np.ndarray:
    """The grey THUMBNAIL x THUMBNAIL float thumbnail of an image file (the whole image, aspect not kept)."""
    with Image.open(path) as img:
        img.draft("L", (THUMBNAIL, THUMBNAIL))  # JPEG: decode at 1/2..1/8 scale, still at least THUMBNAIL px
        grey = ImageOps.exif_transpose(img).convert("L")
        small = grey.resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64)


def phash(grey: np.ndarray) -> np.ndarray:
    """The BITS-bit DCT hash of a THUMBNAIL x THUMBNAIL grey image, packed into BITS / 8 uint8 (np.packbits order).

    Bit r * LOW + c is frequency (1 + r, 1 + c) above the median of the block.
    """
    if grey.shape != (THUMBNAIL, THUMBNAIL):
        raise ValueError(f"phash needs a {THUMBNAIL}x{THUMBNAIL} grey image, got shape {grey.shape}")
    low = (DCT @ grey @ DCT.T)[1 : LOW + 1, 1 : LOW + 1].ravel()
    return np.packbits(low > np.median(low))


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits in which packed hashes differ, over the last axis (broadcast)."""
    return POPCOUNT8[np.bitwise_xor(np.asarray(a, dtype=np.uint8), np.asarray(b, dtype=np.uint8))].sum(axis=-1)


def close_pairs(hashes: np.ndarray, threshold: int) -> np.ndarray:
    """Every pair (i, j), i < j, of rows of `hashes` (N, bytes) within `threshold` bits, as (P, 2) int64, sorted."""
    import faiss  # half a second to import: only loaders that group near-duplicates pay it

    hashes = np.ascontiguousarray(hashes, dtype=np.uint8)
    if len(hashes) == 0:
        return np.empty((0, 2), np.int64)
    index = faiss.IndexBinaryFlat(hashes.shape[1] * 8)
    index.add(hashes)
    limits, _, found = index.range_search(hashes, threshold + 1)  # faiss keeps distances < radius
    query = np.repeat(np.arange(len(hashes)), np.diff(limits).astype(np.int64))
    found = found.astype(np.int64)
    keep = found > query
    return np.unique(np.stack([query[keep], found[keep]], axis=1), axis=0)


def components(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected component of each of `n` items under `pairs` (union-find): the smallest member index of its group."""
    parent = np.arange(n)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]  # path halving keeps the trees flat
            x = parent[x]
        return x

    for a, b in pairs.tolist():
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(x) for x in range(n)], dtype=np.int64)


def groups(hashes: np.ndarray, threshold: int, hashed: np.ndarray | None = None) -> np.ndarray:
    """Near-duplicate group of every row (its smallest member's row); rows not `hashed` stay alone."""
    rows = np.arange(len(hashes)) if hashed is None else np.flatnonzero(hashed)
    group = np.arange(len(hashes), dtype=np.int64)
    group[rows] = rows[components(len(rows), close_pairs(hashes[rows], threshold))]
    return group


def label_conflicts(group: np.ndarray, labels: Mapping[str, np.ndarray]) -> np.ndarray:
    """True for every row of a group whose members carry more than one value of some label."""
    conflicting = np.zeros(len(group), dtype=bool)
    for codes in labels.values():
        distinct = np.unique(np.stack([group, codes], axis=1), axis=0)[:, 0]
        ids, values = np.unique(distinct, return_counts=True)
        conflicting |= np.isin(group, ids[values > 1])
    return conflicting


def threshold_option(value: Any, dataset: str) -> int | None:
    """The option `near_duplicates`: a number of bits 0..BITS - 1, or 'off' (None)."""
    if value == OFF:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < BITS:
        raise DataError(
            f"{dataset}: option 'near_duplicates' must be a Hamming threshold in bits, 0 to {BITS - 1} "
            f"(default {DEFAULT_THRESHOLD}), or '{OFF}'; got {value!r}"
        )
    return value
