"""Evaluating any distilled set: .pt, .npz, image folders; normalization given or inferred; nothing executes."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from dreamdd.errors import DreamddError
from dreamdd.sources import load_source, to_pixels


def test_pt_dict_and_list(tmp_path):
    images, labels = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    torch.save({"images": images, "labels": labels}, tmp_path / "a.pt")
    torch.save([images, labels], tmp_path / "b.pt")
    for name in ("a.pt", "b.pt"):
        d = load_source(tmp_path / name, dataset="digits")
        assert torch.allclose(d.images, images) and d.labels.tolist() == [0, 1, 2, 3]
        assert d.metadata["split"]["dataset"] == "digits" and d.factor == 1


def test_pt_with_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))
    torch.save({"images": Evil(), "labels": torch.zeros(1)}, tmp_path / "evil.pt", _use_new_zipfile_serialization=True)
    with pytest.raises(DreamddError, match="cannot be loaded safely"):
        load_source(tmp_path / "evil.pt", dataset="digits")
    assert not (tmp_path / "pwned").exists()


def test_npz_nhwc_uint8_and_normalized_with_mean_std(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "s.npz", x=x, y=np.array([0, 1, 2]))
    d = load_source(tmp_path / "s.npz", dataset="cifar10")
    assert d.images.shape == (3, 3, 8, 8)
    assert torch.allclose(d.images, torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255)
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.2, 0.2]
    pixels = torch.rand(2, 3, 4, 4)
    normalized = (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    np.savez(tmp_path / "n.npz", images=normalized.numpy(), labels=np.array([0, 1]))
    with pytest.raises(DreamddError, match="look normalized"):
        load_source(tmp_path / "n.npz", dataset="cifar10")
    d = load_source(tmp_path / "n.npz", dataset="cifar10", mean=mean, std=std)
    assert torch.allclose(d.images, pixels, atol=1e-6)


def test_image_folder_with_class_names(tmp_path):
    for name, value in (("0", 10), ("7", 200)):
        (tmp_path / "set" / name).mkdir(parents=True)
        Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(tmp_path / "set" / name / "a.png")
    d = load_source(tmp_path / "set", dataset="digits", class_names=[str(i) for i in range(10)])
    assert d.labels.tolist() == [0, 7] and d.images.shape == (2, 1, 8, 8)
    assert abs(float(d.images[1].mean()) - 200 / 255) < 1e-6


def test_missing_dataset_and_bad_files_are_clear_errors(tmp_path):
    torch.save([torch.rand(2, 1, 8, 8), torch.tensor([0, 1])], tmp_path / "a.pt")
    with pytest.raises(DreamddError, match="--dataset"):
        load_source(tmp_path / "a.pt")
    with pytest.raises(DreamddError, match="no distilled set"):
        load_source(tmp_path / "missing.pt", dataset="digits")
    with pytest.raises(DreamddError, match="both --mean and --std"):
        to_pixels(torch.rand(1, 1, 2, 2), [0.5], None)
