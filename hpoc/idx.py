"""IDX files (the MNIST family's format), checked whole without reading their data: for a
getter's `check()` on a login node and for `hpoc data fetch`."""

from __future__ import annotations

import os

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_problem(path: str | os.PathLike[str]) -> str | None:
    """Why an IDX file (MNIST's format) cannot be read whole, or None. Its header gives the
    dimensions, so a file cut short (a copy or an extraction interrupted) or overwritten
    shows without reading the data."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
            if len(head) < 4 or head[:3] != b"\x00\x00\x08" or not 1 <= head[3] <= 4:
                return f"{path} is not an IDX file of bytes (its header is {head.hex() or 'empty'})"
            dims = fh.read(4 * head[3])
            size = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    if len(dims) < 4 * head[3]:
        return f"{path} is cut short ({size} bytes, inside its header)"
    items = 1
    for i in range(head[3]):
        items *= int.from_bytes(dims[4 * i:4 * i + 4], "big")
    want = 4 + len(dims) + items
    if size != want:
        return f"{path} is {'cut short' if size < want else 'too long'} ({size} bytes; its header says {want})"
    return None


# MNIST and Fashion-MNIST share file names, sizes and format: a copy of MNIST under
# FashionMNIST/raw trains, without an error, on the wrong images. The ink tells them apart:
# MNIST's digits leave ~81% of pixels blank (mean 33/255), Fashion-MNIST's clothes ~50% (73).
_DIGITS_BLANK, _DIGITS_MEAN = 0.7, 50


def idx_digits(path: str | os.PathLike[str], sample: int = 1000) -> str | None:
    """How the first `sample` images of an IDX image file look like MNIST's handwritten
    digits (mostly blank, dim), as words, or None when they do not (or cannot be read)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
            if len(head) < 16 or head[:4] != b"\x00\x00\x08\x03":
                return None
            rows, cols = int.from_bytes(head[8:12], "big"), int.from_bytes(head[12:16], "big")
            pixels = fh.read(sample * rows * cols)
    except OSError:
        return None
    if not pixels:
        return None
    blank, mean = pixels.count(0) / len(pixels), sum(pixels) / len(pixels)
    if blank < _DIGITS_BLANK or mean > _DIGITS_MEAN:
        return None
    return (f"{blank:.0%} of its pixels are blank (mean {mean:.0f}/255), as in MNIST's "
            f"handwritten digits; Fashion-MNIST's images are about half blank")


def fashion_raw_problem(raw: str) -> str | None:
    """Why the four IDX files in `raw` (all there) would not train on Fashion-MNIST: damaged,
    or MNIST's digits copied under its names. None when they would."""
    damaged = [p for p in (idx_problem(os.path.join(raw, n)) for n in IDX_FILES) if p]
    if damaged:  # torchvision would fail on it in an assert or a reshape, on every trial
        return f"Fashion-MNIST is damaged: {'; '.join(damaged)}"
    images = os.path.join(raw, IDX_FILES[0])
    digits = idx_digits(images)
    if digits:
        return f"{images} is not Fashion-MNIST: {digits}"
    # each file whole, but not as many labels as images: torchvision pairs them by index, and
    # a splitter indexing both dropped the images without a label, or failed
    unpaired = [p for p in (_counts_problem(raw, *IDX_FILES[i:i + 2]) for i in (0, 2)) if p]
    return f"Fashion-MNIST is damaged: {'; '.join(unpaired)}" if unpaired else None


def _count(path: str) -> int | None:
    """The first dimension an IDX file's header gives (its images or labels), or None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    return int.from_bytes(head[4:8], "big") if len(head) == 8 else None


def _counts_problem(raw: str, images: str, labels: str) -> str | None:
    """Why an images file and its labels file do not pair up (different counts), or None."""
    paths = os.path.join(raw, images), os.path.join(raw, labels)
    n_images, n_labels = map(_count, paths)
    if n_images is None or n_labels is None or n_images == n_labels:
        return None
    return f"{paths[0]} holds {n_images} images and {paths[1]} {n_labels} labels"


_FOLDERS = ("MNIST", "FashionMNIST", "KMNIST", "EMNIST", "QMNIST")  # torchvision's, one a dataset


def idx_whereabouts(root: str, folder: str) -> str | None:
    """Where the IDX files that torchvision looks for in `root/folder/raw` are instead, as
    advice, or None: users unpack them one level too deep or too shallow, copy only the
    .gz files, or point at another dataset's folder."""
    raw = os.path.join(root, folder, "raw")
    if any(os.path.isfile(os.path.join(raw, n + ".gz")) for n in IDX_FILES):
        return f"{raw} holds .gz files: torchvision reads them decompressed (gunzip -k {raw}/*.gz)"
    # Under the root, anywhere near; above it, only where a root one level too deep misses
    # them (a sibling directory's files may be another study's).
    parent = os.path.dirname(root)
    found = _find_dir_with(root, IDX_FILES[0]) or next(
        (d for d in (os.path.join(parent, folder, "raw"), os.path.join(parent, "raw"), parent)
         if _find_dir_with(d, IDX_FILES[0], depth=0)), None)
    if found is None or os.path.realpath(found) == os.path.realpath(raw):
        return None
    return _advice(found, raw, folder)


def _advice(found: str, raw: str, folder: str) -> str:
    parent, here = os.path.split(found)
    other = os.path.basename(parent)
    if here == "raw" and other == folder:
        return f"the files are in {found}: set the getter's root to {os.path.dirname(parent)}"
    if here == "raw" and other in _FOLDERS:
        return f"{found} holds {other}, another dataset: fetch this one"
    return f"the files are in {found}: torchvision reads them only from {raw} (move them there)"


def _find_dir_with(top: str, name: str, depth: int = 3, budget: int = 2000) -> str | None:
    """The first directory under `top` (at most `depth` levels down, `budget` directories
    looked at: a parent may be a whole home directory) holding `name` or `name.gz`."""
    level = [top]
    for _ in range(depth + 1):
        deeper = []
        for d in level:
            try:
                entries = list(os.scandir(d))
            except OSError:
                continue
            if any(e.name in (name, name + ".gz") and e.is_file() for e in entries):
                return d
            deeper += sorted(e.path for e in entries if e.is_dir(follow_symlinks=False)
                             and not e.name.startswith("."))
            budget -= 1
            if budget <= 0:
                return None
        level = deeper
    return None
