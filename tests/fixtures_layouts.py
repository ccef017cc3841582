"""Tiny datasets in the official on-disk layouts, built from generated pictures.

Every image here is random colour noise drawn by `write_image`, or a face
drawn by the synthfaces renderer (`render_faces_for_files`); no real dataset
image is ever copied (UTKFace, CelebA and FairFace licences forbid it).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from fairfacebench.datasets.celeba import ATTRIBUTE_NAMES
from fairfacebench.datasets.fairface import AGES, RACES
from fairfacebench.datasets.synthfaces.render import render_faces, sample_params

UTK_AGES = (5, 25, 33, 45, 65, 80)  # every age_group, three ages each side of 40
UTK_MISSING_RACE = (
    "39_1_20170116174525125.jpg.chip.jpg",
    "61_1_20170109142408075.jpg.chip.jpg",
    "61_1_20170109150557335.jpg.chip.jpg",
)
UTK_IRREGULAR = ("24_0_1_20170116220224657 .jpg.chip.jpg", "55_0_0_20170116232725357jpg.chip.jpg")


def write_image(path: Path, seed: int, size: tuple[int, int] = (24, 24), fmt: str | None = None) -> Path:
    """A generated RGB picture: a random colour plus noise (width, height = size)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, 3) * 0.7 + rng.integers(0, 76, (size[1], size[0], 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, format=fmt)
    return path


def truncate(path: Path) -> Path:
    """Cut a file to half its bytes (a truncated JPEG)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_lines(path: Path, lines: list[str], line_ending: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(line + line_ending for line in lines).encode())
    return path


def build_utkface(root: Path) -> list[str]:
    """60 regular files (2 genders x 5 races x 6 ages) plus the 5 irregular names of the real release."""
    names = []
    for gender in (0, 1):
        for race in range(5):
            for i, age in enumerate(UTK_AGES):
                names.append(f"{age}_{gender}_{race}_2017011{gender}{race}{i:010d}.jpg.chip.jpg")
    for seed, name in enumerate([*names, *UTK_MISSING_RACE, *UTK_IRREGULAR]):
        write_image(root / name, seed, fmt="JPEG")
    return names


def render_faces_for_files(n: int, size: int = 128, seed: int = 0) -> np.ndarray:
    """`n` faces (uint8 (n, size, size, 3)) drawn by the synthfaces renderer from independent latent parameters."""
    rng = np.random.default_rng(seed)
    labels = {k: rng.integers(0, m, n) for k, m in (("skin_tone", 3), ("hair_length", 2), ("smiling", 2))}
    labels["eyeglasses"] = rng.integers(0, 2, n)
    return render_faces(sample_params(rng, labels, (1.0, 1.0, 1.0)), size, seed)


COPY_KINDS = ("identical", "jpeg", "resized", "brighter", "smaller")


def plant_copy(original: Path, kind: str, path: Path) -> Path:
    """A near-duplicate of the JPEG `original`: its bytes ('identical'), re-encoded at quality 40 ('jpeg'), halved
    and enlarged back ('resized'), 24 grey levels brighter ('brighter'), or stored at 5/8 of its size ('smaller')."""
    if kind == "identical":
        path.write_bytes(original.read_bytes())
        return path
    with Image.open(original) as img:
        rgb = img.convert("RGB")
    if kind == "resized":
        rgb = rgb.resize((rgb.width // 2, rgb.height // 2), Image.Resampling.BILINEAR).resize(rgb.size)
    elif kind == "smaller":
        rgb = rgb.resize((rgb.width * 5 // 8, rgb.height * 5 // 8), Image.Resampling.BILINEAR)
    elif kind == "brighter":
        rgb = Image.fromarray(np.clip(np.asarray(rgb, dtype=np.int64) + 24, 0, 255).astype(np.uint8))
    rgb.save(path, format="JPEG", quality=40 if kind == "jpeg" else 95)
    return path


def build_utkface_with_near_duplicates(root: Path) -> dict[str, list]:
    """60 distinct rendered faces under UTKFace names (2 genders x 5 races x 6 ages), then planted near-duplicates
    under new names: faces 0-4 one copy each (COPY_KINDS in order) and face 6 two copies ('identical', 'resized'),
    all with their original's labels; face 5 one 'jpeg' copy labelled with the other gender (a conflicting group)."""
    root.mkdir(parents=True, exist_ok=True)
    faces = render_faces_for_files(60)
    names = []
    for gender in (0, 1):
        for race in range(5):
            for i, age in enumerate(UTK_AGES):
                names.append(f"{age}_{gender}_{race}_2017011{gender}{race}{i:010d}.jpg.chip.jpg")
    for face, name in zip(faces, names):
        Image.fromarray(face).save(root / name, format="JPEG", quality=95)

    def copy(face: int, kind: str, number: int, gender: int | None = None) -> str:
        age, own_gender, race = names[face].split("_")[:3]
        name = f"{age}_{own_gender if gender is None else gender}_{race}_2018{number:013d}.jpg.chip.jpg"
        plant_copy(root / names[face], kind, root / name)
        return name

    groups = [[names[i], copy(i, kind, i)] for i, kind in enumerate(COPY_KINDS)]
    groups.append([names[6], copy(6, "identical", 6), copy(6, "resized", 60)])
    conflict = [names[5], copy(5, "jpeg", 5, gender=1 - int(names[5].split("_")[1]))]
    return {"names": names, "groups": groups, "conflict": conflict}


def fairface_rows(split: str, per_group: int) -> list[list[str]]:
    """`per_group` rows per (race, gender); one age per (race, gender) so every stratum has per_group rows."""
    rows, number = [], 0
    for r, race in enumerate(RACES):
        for g, gender in enumerate(("Male", "Female")):
            for _ in range(per_group):
                number += 1
                age = AGES[(2 * r + g) % len(AGES)]
                rows.append([f"{split}/{number}.jpg", age, gender, race, str(number % 2 == 0)])
    return rows


def build_fairface(root: Path, line_ending: str = "\n") -> dict[str, list[list[str]]]:
    """42 images: train CSV 28 rows (2 per race x gender), val CSV 14 rows; two image sizes."""
    header = "file,age,gender,race,service_test"
    rows = {"train": fairface_rows("train", 2), "val": fairface_rows("val", 1)}
    for split, split_rows in rows.items():
        write_lines(root / f"fairface_label_{split}.csv", [header, *(",".join(r) for r in split_rows)], line_ending)
        for i, row in enumerate(split_rows):
            write_image(root / row[0], 1000 * (split == "val") + i, size=(30, 30) if i % 2 else (40, 36), fmt="JPEG")
    return rows


def celeba_values(n: int) -> np.ndarray:
    """(n, 40) of 1/-1; Male and Young alternate so every split holds both classes of each."""
    values = np.where(np.random.default_rng(7).random((n, len(ATTRIBUTE_NAMES))) < 0.5, -1, 1)
    values[:, ATTRIBUTE_NAMES.index("Male")] = np.where(np.arange(n) % 2, 1, -1)
    values[:, ATTRIBUTE_NAMES.index("Young")] = np.where((np.arange(n) // 2) % 2, 1, -1)
    return values


def celeba_partition(n: int) -> list[int]:
    """60% train, 20% val, 20% test in file order, like the official partition."""
    return [0 if i < 0.6 * n else 1 if i < 0.8 * n else 2 for i in range(n)]


def build_celeba(
    root: Path, variant: str = "txt", n: int = 30, line_ending: str = "\n"
) -> tuple[list[str], np.ndarray, list[int]]:
    """n generated 36x44 images (CelebA's 178x218 aspect) and the label files of `variant` ('txt' or 'csv')."""
    files = [f"{i + 1:06d}.jpg" for i in range(n)]
    values, partition = celeba_values(n), celeba_partition(n)
    for i, name in enumerate(files):
        write_image(root / "img_align_celeba" / name, 2000 + i, size=(36, 44), fmt="JPEG")
    if variant == "txt":
        rows = [f"{f} " + " ".join(f"{v:2d}" for v in row) for f, row in zip(files, values)]
        attr_lines = [str(n), " ".join(ATTRIBUTE_NAMES), *rows]
        part_lines = [f"{f} {p}" for f, p in zip(files, partition)]
    else:
        rows = [",".join((f, *map(str, row))) for f, row in zip(files, values)]
        attr_lines = [",".join(("image_id", *ATTRIBUTE_NAMES)), *rows]
        part_lines = ["image_id,partition"] + [f"{f},{p}" for f, p in zip(files, partition)]
    write_lines(root / f"list_attr_celeba.{variant}", attr_lines, line_ending)
    write_lines(root / f"list_eval_partition.{variant}", part_lines, line_ending)
    return files, values, partition


def build_pool_folder(root: Path) -> dict[str, int]:
    """A messy folder: nested dirs, six formats, odd names, a duplicate, a text file, a truncated and an empty file."""
    write_image(root / "a.jpg", 1, fmt="JPEG")
    write_image(root / "sub" / "b.png", 2, size=(40, 20))
    write_image(root / "sub" / "deeper" / "c.bmp", 3)
    write_image(root / "d.webp", 4, fmt="WEBP")
    write_image(root / "UPPER CASE.JPEG", 5, fmt="JPEG")
    write_image(root / "no_extension", 6, fmt="PNG")
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(root / "sub" / "anim.gif", save_all=True, append_images=frames[1:])
    (root / "sub" / "deeper" / "a copy.jpg").write_bytes((root / "a.jpg").read_bytes())
    (root / "notes.txt").write_text("not an image\n")
    (root / "empty.png").write_bytes(b"")
    truncate(write_image(root / "sub" / "broken.jpg", 8, size=(64, 64), fmt="JPEG"))
    return {"files": 11, "images": 7, "duplicates": 1, "non_image": 2, "corrupt": 1}


CSV_SKIN = ("light", "medium", "dark")


def build_csv_folder(root, n=60, split=False):
    """n generated images under root/img/ and labels.csv: image, smiling, skin, glasses, a notes column (ignored)."""
    rows = []
    for i in range(n):
        rel = f"img/{i:03d}.png"
        write_image(root / rel, seed=i, size=(20, 20), fmt="PNG")
        row = {"image": rel, "smiling": "yes" if i % 2 else "no", "skin": CSV_SKIN[i % 3], "glasses": str(i % 4 // 2)}
        if split:
            row["part"] = ("train", "train", "train", "val", "test")[i % 5]
        rows.append({**row, "notes": f"generated {i}"})
    with open(root / "labels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root
