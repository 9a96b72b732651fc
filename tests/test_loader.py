"""DeviceLoader: epoch permutations from the generator, batch counts, alignment; ImageDataset."""
import pytest
import torch

from ssltutor.data import DeviceLoader, ImageDataset


def indexed_data(n=103):
    """Images whose first pixel encodes the sample index, labels = index: alignment is easy to check."""
    images = torch.zeros(n, 3, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    return images, torch.arange(n)


@pytest.mark.parametrize("drop_last, expected", [(True, 10), (False, 11)])
def test_len_and_batches(drop_last, expected):
    images, labels = indexed_data()
    loader = DeviceLoader(images, labels, 10, drop_last=drop_last, generator=torch.Generator().manual_seed(0))
    batches = list(loader)
    assert len(loader) == len(batches) == expected
    assert all(len(x) == 10 for x, _ in batches[:10])
    seen = torch.cat([y for _, y in batches])
    assert len(seen.unique()) == len(seen)  # no sample twice in an epoch
    if not drop_last:
        assert torch.equal(seen.sort().values, labels) and len(batches[-1][0]) == 3
    for x, y in batches:  # images and labels stay aligned, uint8 is kept
        assert x.dtype == torch.uint8 and torch.equal(x[:, 0, 0, 0].long(), y)


def test_permutation_comes_from_the_generator_per_epoch():
    images, labels = indexed_data()
    order = lambda loader: torch.cat([y for _, y in loader])  # noqa: E731
    a = DeviceLoader(images, labels, 16, generator=torch.Generator().manual_seed(7))
    b = DeviceLoader(images, labels, 16, generator=torch.Generator().manual_seed(7))
    rng_state = torch.random.get_rng_state()
    first, second = order(a), order(a)
    assert torch.equal(torch.random.get_rng_state(), rng_state)  # the global RNG is not used
    assert not torch.equal(first, second)  # a new permutation each epoch
    assert torch.equal(first, order(b)) and torch.equal(second, order(b))
    expected = torch.randperm(103, generator=torch.Generator().manual_seed(7))[:96]
    assert torch.equal(first, expected)


def test_no_shuffle_keeps_order_and_unlabelled_and_small_data():
    images, labels = indexed_data(25)
    loader = DeviceLoader(images, None, 8, shuffle=False, drop_last=False, device="cpu")
    batches = list(loader)
    assert all(y is None for _, y in batches)
    assert torch.equal(torch.cat([x[:, 0, 0, 0] for x, _ in batches]).long(), labels)
    assert len(DeviceLoader(images, labels, 64, drop_last=True)) == 0  # fewer samples than a batch: no step
    with pytest.raises(ValueError, match="batch_size"):
        DeviceLoader(images, labels, 0)
    with pytest.raises(ValueError, match="length"):
        DeviceLoader(images, labels[:3], 4)


def test_image_dataset_to_subset_and_validation():
    images, labels = indexed_data(10)
    data = ImageDataset(images, labels, ["a"] * 10, "toy", "train")
    part = data.subset(torch.tensor([3, 1]))
    assert len(part) == 2 and part.labels.tolist() == [3, 1] and part.images.is_contiguous()
    assert part.name == "toy" and part.split == "train" and data.num_classes == 10
    assert len(data.subset(labels < 4)) == 4
    assert data.to("cpu").images.device.type == "cpu"
    assert "10x3x4x4 uint8" in repr(data)
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(images.float(), labels, [], "toy", "train")
    with pytest.raises(ValueError, match="int64"):
        ImageDataset(images, labels[:5], [], "toy", "train")
