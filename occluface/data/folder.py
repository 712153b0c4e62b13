"""Identity-per-folder face datasets: scanning, train/test splits and a torch Dataset over them.

Layout: ``root/<identity>/<image>`` (images may sit in sub-folders of the identity folder). Everything is
sorted so the same folder always gives the same samples, classes and, for a given seed, the same split.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple, Sequence

from occluface.data.images import is_image_file, load_pil
from occluface.errors import DatasetError

__all__ = ["Sample", "scan_folder", "split_samples", "classes_of", "FaceFolderDataset", "SPLIT_MODES"]

SPLIT_MODES = ("image", "identity")


class Sample(NamedTuple):
    """One labelled image: its path and the identity (folder name) it shows."""

    path: Path
    label: str


def _visible(path: Path | str) -> bool:
    return not Path(path).name.startswith(".")


def scan_folder(root: str | Path) -> list[Sample]:
    """All images under ``root/<identity>/``, sorted by identity then path.

    Identity folders without any image are skipped; a root with no identity folder or no image at all is a
    DatasetError naming the folder (the usual mistake is pointing at one identity, or at a flat folder).
    """
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: dataset folder does not exist")
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset path is a file, expected a folder with one sub-folder per identity")
    identities = sorted((d for d in root.iterdir() if d.is_dir() and _visible(d)), key=lambda d: d.name)
    if not identities:
        loose = sum(1 for f in root.iterdir() if f.is_file() and is_image_file(f))
        hint = f" (it holds {loose} loose images: put each identity's images in its own sub-folder)" if loose else ""
        raise DatasetError(f"{root}: no identity sub-folders found{hint}")
    samples: list[Sample] = []
    for folder in identities:
        files = sorted(
            p
            for p in folder.rglob("*")
            if p.is_file() and is_image_file(p) and all(_visible(part) for part in p.relative_to(folder).parts)
        )
        samples.extend(Sample(p, folder.name) for p in files)
    if not samples:
        raise DatasetError(f"{root}: no images found in its {len(identities)} identity sub-folder(s)")
    return samples


def classes_of(samples: Iterable[Sample]) -> list[str]:
    """Sorted distinct identity labels: the class index of a label is its position here."""
    return sorted({s.label for s in samples})


def _group(samples: Sequence[Sample]) -> dict[str, list[Sample]]:
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[s.label].append(s)
    return {k: sorted(v) for k, v in sorted(groups.items())}


def split_samples(
    samples: Sequence[Sample], *, by: str = "image", test_fraction: float = 0.2, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Split into (train, test), deterministic for a given seed and independent of input order.

    ``by="image"`` (closed set, as the coal-mine paper): within each identity ``round(n * test_fraction)``
    images go to test, at least one and never all, so every identity with two or more images is in both
    sets (a one-image identity stays in train). ``by="identity"`` (open set, for verification): whole
    identities go to test, at least one and never all, so the two sets share no label.
    ``test_fraction=0`` puts everything in train.
    """
    if by not in SPLIT_MODES:
        raise DatasetError(f"split must be one of {', '.join(SPLIT_MODES)}, got {by!r}")
    try:
        fraction = float(test_fraction)
    except (TypeError, ValueError):
        raise DatasetError(f"test_fraction must be a number in [0, 1), got {test_fraction!r}") from None
    if not 0.0 <= fraction < 1.0:
        raise DatasetError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    if not samples:
        raise DatasetError("cannot split an empty list of samples")
    groups = _group(samples)
    rng = random.Random(seed)
    train: list[Sample] = []
    test: list[Sample] = []
    if fraction == 0.0:
        return [s for g in groups.values() for s in g], []
    if by == "image":
        for items in groups.values():
            order = list(items)
            rng.shuffle(order)
            n_test = min(max(round(len(order) * fraction), 1), len(order) - 1)
            test_set = set(order[:n_test])
            train.extend(s for s in items if s not in test_set)
            test.extend(s for s in items if s in test_set)
    else:
        labels = list(groups)
        if len(labels) < 2:
            raise DatasetError(f"an identity split needs at least 2 identities, got {len(labels)}")
        rng.shuffle(labels)
        n_test = min(max(round(len(labels) * fraction), 1), len(labels) - 1)
        test_labels = set(labels[:n_test])
        for label, items in groups.items():
            (test if label in test_labels else train).extend(items)
    return train, test


class FaceFolderDataset:
    """Map-style dataset yielding ``(transform(RGB PIL image), class_index)``.

    Images are decoded with ``load_pil`` (grey, 16-bit and palette images become RGB); a file that cannot
    be decoded raises ImageError naming it.
    """

    def __init__(self, samples: Sequence[Sample], classes: Sequence[str], transform: Callable[[Any], Any] | None):
        self.samples = list(samples)
        self.classes = list(classes)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        missing = sorted({s.label for s in self.samples} - set(self.class_to_idx))
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise DatasetError(f"{len(missing)} sample label(s) are not among the classes: {shown}")
        self.transform = transform
        self.targets = [self.class_to_idx[s.label] for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        sample = self.samples[index]
        image = load_pil(sample.path, mode="RGB")
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]
