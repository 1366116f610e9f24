import torch

from dreamdd.synthetic import SyntheticSet, decode, initial_images, mosaic


def test_decode_shapes_and_tiles():
    images = torch.rand(3, 2, 8, 8)
    assert decode(images, 1) is images
    out = decode(images, 2)
    assert out.shape == (12, 2, 8, 8)
    # a constant tile decodes to a constant image
    images = torch.zeros(1, 1, 8, 8)
    images[0, 0, :4, 4:] = 1.0   # top-right tile
    out = decode(images, 2)
    assert torch.allclose(out[1], torch.ones(1, 8, 8)) and out[0].abs().sum() == 0 and out[3].abs().sum() == 0


def test_mosaic_then_decode_recovers_downsampled_images():
    real = torch.rand(8, 3, 16, 16)
    stored = mosaic(real, 2)
    assert stored.shape == (2, 3, 16, 16)
    small = torch.nn.functional.interpolate(real, size=(8, 8), mode="nearest")
    decoded = decode(stored, 2)
    expected = torch.nn.functional.interpolate(small, size=(16, 16), mode="bilinear", align_corners=False)
    assert torch.allclose(decoded, expected)
    # tile (i, j) of stored image 0 holds real image 2i + j
    assert torch.equal(stored[0, :, 8:, :8], small[2])
    assert torch.equal(stored[1, :, :8, 8:], small[5])


def test_synthetic_set_sample_and_decoded():
    s = SyntheticSet(torch.rand(3 * 4, 1, 8, 8), num_classes=3, factor=2)
    images, labels = s.sample(1, 10, torch.Generator().manual_seed(0))
    assert images.shape == (10, 1, 8, 8) and set(labels.tolist()) == {1}
    assert images.requires_grad
    images, labels = s.decoded()
    assert images.shape == (48, 1, 8, 8) and labels.tolist() == sum([[c] * 16 for c in range(3)], [])
    s.images.data.mul_(3)
    s.clamp_()
    assert s.images.max() <= 1


def test_initial_images_real_uses_mosaic_of_ipc_f2_images():
    calls = []

    def choose(c, n):
        calls.append((c, n))
        return torch.full((n, 1, 8, 8), float(c) / 10)

    images = initial_images("real", 2, 3, 2, (1, 8, 8), choose, torch.Generator().manual_seed(0), "cpu")
    assert images.shape == (6, 1, 8, 8) and calls == [(0, 12), (1, 12)]
    assert torch.allclose(images[3:], torch.full((3, 1, 8, 8), 0.1))
    noise = initial_images("noise", 2, 3, 2, (1, 8, 8), None, torch.Generator().manual_seed(0), "cpu")
    assert noise.shape == (6, 1, 8, 8) and 0 <= noise.min() and noise.max() <= 1 and noise.std() > 0.1
