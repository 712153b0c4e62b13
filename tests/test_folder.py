"""Identity-folder scanning, train/test splits, the dataset and the transforms."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from occluface.data.augment import build_transform
from occluface.data.folder import FaceFolderDataset, Sample, classes_of, scan_folder, split_samples
from occluface.errors import DatasetError, ImageError

DATA = Path(__file__).parents[1] / "data"


def _make_tree(root: Path, counts: dict[str, int]) -> Path:
    for label, n in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("L", (12, 14), color=(i * 20) % 255).save(root / label / f"img{i:02d}.png")
    return root


def test_scan_folder_sorted_deterministic_and_filters_non_images(tmp_path):
    root = _make_tree(tmp_path / "ds", {"bob": 3, "alice": 2})
    (root / "alice" / "notes.txt").write_text("not an image")
    (root / "alice" / ".hidden.png").write_bytes(b"")
    (root / "empty_person").mkdir()
    (root / "bob" / "sub").mkdir()
    Image.new("RGB", (5, 5)).save(root / "bob" / "sub" / "deep.jpg")
    samples = scan_folder(root)
    assert [s.label for s in samples] == ["alice"] * 2 + ["bob"] * 4
    assert samples == sorted(samples)
    assert all(isinstance(s, Sample) and s.path.exists() for s in samples)
    assert scan_folder(root) == samples
    assert classes_of(samples) == ["alice", "bob"]


def test_scan_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        scan_folder(tmp_path / "missing")
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (5, 5)).save(flat / "a.png")
    with pytest.raises(DatasetError, match=r"flat: no identity sub-folders.*1 loose images"):
        scan_folder(flat)
    empty = tmp_path / "noimages"
    (empty / "person").mkdir(parents=True)
    (empty / "person" / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match="noimages: no images found"):
        scan_folder(empty)


def test_split_by_image_is_stratified_disjoint_and_seeded():
    samples = scan_folder(DATA / "yaleb")
    train, test = split_samples(samples, by="image", test_fraction=0.2, seed=3)
    assert set(train).isdisjoint(test)
    assert sorted(train + test) == sorted(samples)
    per_id = Counter(s.label for s in samples)
    test_counts = Counter(s.label for s in test)
    assert set(test_counts) == set(per_id) == {s.label for s in train}
    for label, n in per_id.items():
        assert test_counts[label] == round(n * 0.2)
    assert split_samples(list(reversed(samples)), by="image", test_fraction=0.2, seed=3) == (train, test)
    other = split_samples(samples, by="image", test_fraction=0.2, seed=4)[1]
    assert set(other) != set(test)


def test_split_by_image_keeps_small_identities_in_both_sets():
    samples = [Sample(Path(f"/x/{c}/{i}.png"), c) for c, n in (("a", 2), ("b", 3), ("c", 1)) for i in range(n)]
    train, test = split_samples(samples, by="image", test_fraction=0.9, seed=0)
    assert Counter(s.label for s in test) == {"a": 1, "b": 2}
    assert Counter(s.label for s in train) == {"a": 1, "b": 1, "c": 1}


def test_split_by_identity_has_disjoint_labels():
    samples = scan_folder(DATA / "yaleb")
    train, test = split_samples(samples, by="identity", test_fraction=0.3, seed=0)
    train_ids, test_ids = {s.label for s in train}, {s.label for s in test}
    assert train_ids.isdisjoint(test_ids)
    assert len(test_ids) == 3 and len(train_ids) == 7
    assert split_samples(samples, by="identity", test_fraction=0.3, seed=0) == (train, test)


def test_split_rejects_bad_arguments():
    samples = [Sample(Path("/x/a/1.png"), "a"), Sample(Path("/x/b/1.png"), "b")]
    with pytest.raises(DatasetError, match="split must be one of"):
        split_samples(samples, by="person")
    with pytest.raises(DatasetError, match="test_fraction"):
        split_samples(samples, test_fraction=1.0)
    with pytest.raises(DatasetError, match="at least 2 identities"):
        split_samples(samples[:1], by="identity")
    assert split_samples(samples, test_fraction=0.0) == (samples, [])


def test_dataset_returns_rgb_tensor_and_index_and_names_bad_images(tmp_path):
    root = _make_tree(tmp_path / "ds", {"a": 2, "b": 1})
    bad = root / "b" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    samples = scan_folder(root)
    ds = FaceFolderDataset(samples, ["a", "b"], build_transform(16, train=False))
    x, y = ds[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y == 0
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2]), "grey images become 3 equal channels"
    assert ds.targets == [0, 0, 1, 1]
    bad_index = next(i for i, s in enumerate(samples) if s.path == bad)
    with pytest.raises(ImageError, match="broken.jpg"):
        ds[bad_index]
    with pytest.raises(DatasetError, match="not among the classes"):
        FaceFolderDataset(samples, ["a"], None)


def test_transforms_normalise_augment_and_run_extra_hooks():
    img = Image.fromarray(np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1)), "L").convert("RGB")
    eval_tf = build_transform((24, 20), train=False)
    x = eval_tf(img)
    assert x.shape == (3, 24, 20)
    assert x.min() >= -1.0 and x.max() <= 1.0 and x.min() < -0.8 and x.max() > 0.8
    assert torch.equal(eval_tf(img), x)
    train_tf = build_transform(24, train=True)
    torch.manual_seed(0)
    outs = [train_tf(img) for _ in range(6)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:]), "training transform must jitter"
    assert torch.equal(build_transform(24, train=True, augment=False)(img), build_transform(24, train=False)(img))
    calls = []

    def blackout(image):
        calls.append(image)
        return np.zeros((10, 10, 3), dtype=np.uint8)  # an array, not PIL

    y = build_transform(16, train=False, extra=[blackout])(img)
    assert len(calls) == 1 and isinstance(calls[0], Image.Image) and calls[0].mode == "RGB"
    assert torch.all(y == -1.0)
