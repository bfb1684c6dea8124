"""Image-classification data sets behind one registry.

Every data set loads as an :class:`ImageSet`: ``images`` uint8 ``[N, H, W, C]``, ``labels`` int64 ``[N]``
and ``classes`` (names). Models take care of resizing and normalisation, so the cache and the student see
exactly the same bytes.

Registered names:

* ``fashion-mnist`` (default, offline): the Debian package ``dataset-fashion-mnist`` (60k/10k, 28x28 gray)
  under ``/usr/share/datasets/fashion-mnist``, or the folder in ``$SDR_TOSC_FASHION_MNIST``.
* ``cifar10`` / ``cifar100``: through torchvision (``torchvision.datasets.CIFAR10``) if installed, else
  Hugging Face ``datasets`` (``uoft-cs/cifar10``, ``uoft-cs/cifar100``); both download on first use, so they
  need a network once. ``root`` (or ``$SDR_TOSC_DATA``) is where they are kept.
* ``folder:PATH``: your own images, one sub-folder per class (``PATH/train/<class>/*.png`` and
  ``PATH/test/<class>/*.png``, or ``PATH/<class>/*`` for a single split); all images are resized to the
  size of the first one.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
SPLITS = ("train", "test")


@dataclass(frozen=True)
class ImageSet:
    """Images ``uint8 [N, H, W, C]``, labels ``int64 [N]``, class names; ``name``/``split`` for provenance."""

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"{self.name}: images must be uint8 [N, H, W, C], got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"{self.name}: {self.images.shape[0]} images but labels of shape {self.labels.shape}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, index: np.ndarray) -> ImageSet:
        return ImageSet(self.name, self.split, self.images[index], self.labels[index], self.classes)


def available() -> list[str]:
    return ["fashion-mnist", "cifar10", "cifar100", "folder:PATH"]


def load_dataset(name: str, split: str = "train", root: str | os.PathLike[str] | None = None) -> ImageSet:
    """Load ``split`` (``train`` or ``test``) of the data set ``name`` (see the module docstring)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    key = name.lower()
    if key in ("fashion-mnist", "fashion_mnist", "fmnist"):
        return _load_fashion_mnist(split, root)
    if key in ("cifar10", "cifar-10", "cifar100", "cifar-100"):
        return _load_cifar(key.replace("-", ""), split, root)
    if key.startswith("folder:"):
        return _load_folder(name[len("folder:"):], split)
    raise ValueError(f"unknown dataset {name!r}: available are {', '.join(available())}")


# ---------------------------------------------------------------------------------------------- Fashion-MNIST
def _find_fashion_mnist(root: str | os.PathLike[str] | None) -> Path:
    candidates = [root, os.environ.get("SDR_TOSC_FASHION_MNIST"), *FASHION_MNIST_DIRS]
    for c in candidates:
        if c and (Path(c) / "train-images-idx3-ubyte.gz").exists():
            return Path(c)
    raise FileNotFoundError(
        "Fashion-MNIST not found (looked in "
        + ", ".join(str(c) for c in candidates if c)
        + "); install it with 'apt install dataset-fashion-mnist' (scripts/setup.sh does) "
        "or set SDR_TOSC_FASHION_MNIST to a folder with the four idx .gz files"
    )


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (the MNIST format, optionally gzip-compressed) into a numpy array, checking its size."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: cannot read IDX file ({exc}); the file is corrupt or truncated") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (bad magic {data[:4]!r})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise ValueError(f"{path}: IDX says shape {shape} ({expected} bytes) but the file has {len(data)} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _load_fashion_mnist(split: str, root: str | os.PathLike[str] | None) -> ImageSet:
    folder = _find_fashion_mnist(root)
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    return ImageSet("fashion-mnist", split, images[..., None].copy(), labels, FASHION_MNIST_CLASSES)


# ---------------------------------------------------------------------------------------------- CIFAR
def _load_cifar(key: str, split: str, root: str | os.PathLike[str] | None) -> ImageSet:
    root = Path(root or os.environ.get("SDR_TOSC_DATA", Path.home() / ".cache" / "sdr-tosc" / "data"))
    try:
        import torchvision.datasets as tvd  # noqa: PLC0415

        cls = tvd.CIFAR10 if key == "cifar10" else tvd.CIFAR100
        ds = cls(str(root), train=(split == "train"), download=True)
        images = np.asarray(ds.data, dtype=np.uint8)
        return ImageSet(key, split, images, np.asarray(ds.targets, dtype=np.int64), tuple(ds.classes))
    except ImportError:
        pass
    try:
        import datasets as hfd  # noqa: PLC0415
    except ImportError:
        raise ImportError(
            f"{key} needs torchvision or Hugging Face datasets: pip install torchvision (or datasets)"
        ) from None
    repo = "uoft-cs/cifar10" if key == "cifar10" else "uoft-cs/cifar100"
    ds = hfd.load_dataset(repo, split=split, cache_dir=str(root))
    label_col = "label" if "label" in ds.column_names else "fine_label"
    images = np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in ds["img"]])
    return ImageSet(key, split, images, np.asarray(ds[label_col], dtype=np.int64), tuple(ds.features[label_col].names))


# ---------------------------------------------------------------------------------------------- image folders
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def _load_folder(path: str, split: str) -> ImageSet:
    from PIL import Image  # noqa: PLC0415  (Pillow comes with matplotlib)

    base = Path(path)
    if not base.is_dir():
        raise FileNotFoundError(f"image folder not found: {base}")
    folder = base / split if (base / split).is_dir() else base
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir() and d.name not in SPLITS)
    if not classes:
        raise ValueError(f"{folder}: no class sub-folders (expected {folder}/<class>/*.png)")
    images, labels, size, mode = [], [], None, None
    for label, cls in enumerate(classes):
        for f in sorted((folder / cls).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(f) as im:
                    if mode is None:
                        mode = "L" if im.mode in ("L", "1", "I", "I;16") else "RGB"
                        size = im.size
                    arr = np.asarray(im.convert(mode).resize(size), dtype=np.uint8)
            except OSError as exc:
                raise ValueError(f"{f}: not a readable image ({exc})") from None
            images.append(arr[..., None] if arr.ndim == 2 else arr)
            labels.append(label)
    if not images:
        raise ValueError(f"{folder}: no images with suffix {sorted(IMAGE_SUFFIXES)}")
    return ImageSet(f"folder:{base}", split, np.stack(images), np.asarray(labels, dtype=np.int64), tuple(classes))
