"""separable_filter: the native CPU filter and the convolution fallback against a plain 2D correlation."""
import pytest
import torch
import torch.nn.functional as F

from gaussian_rasterizer import image_filter, separable_filter

# Sums of at most 121 products of values in [0, 1] with weights summing to about 1: float32 rounding stays far
# below this.
FLOAT32_ATOL = 1e-5


def correlation_2d(images, taps):
    """The definition: zero-padded correlation with the outer product of taps, one plane at a time."""
    height, width = images.shape[-2:]
    planes = images.reshape(-1, 1, height, width)
    window = torch.outer(taps, taps).view(1, 1, taps.numel(), taps.numel())
    return F.conv2d(planes, window, padding=taps.numel() // 2).reshape(images.shape)


@pytest.fixture
def without_native(monkeypatch):
    monkeypatch.setattr(image_filter, "_cpu", None)


def lopsided_taps(count, dtype=torch.float32):
    """Not symmetric, so that a filter turned the wrong way round is caught."""
    taps = torch.arange(1, count + 1, dtype=dtype) ** 1.5
    return taps / taps.sum()


@pytest.mark.parametrize("shape", [(1, 15, 30, 41), (3, 7, 9), (2, 4, 5), (17, 1)])
@pytest.mark.parametrize("count", [1, 5, 11])
def test_native_filter_is_the_2d_correlation(shape, count):
    assert image_filter._cpu is not None, "the CPU extension is not built"
    images = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    taps = lopsided_taps(count)
    torch.testing.assert_close(separable_filter(images, taps), correlation_2d(images, taps), atol=FLOAT32_ATOL, rtol=0)


@pytest.mark.parametrize("shape", [(1, 6, 30, 41), (5, 4)])
def test_fallback_filter_is_the_2d_correlation(without_native, shape):
    images = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    taps = lopsided_taps(7)
    torch.testing.assert_close(separable_filter(images, taps), correlation_2d(images, taps), atol=FLOAT32_ATOL, rtol=0)


def test_gradient_is_the_adjoint():
    images = torch.rand(2, 3, 20, 26, generator=torch.Generator().manual_seed(2), requires_grad=True)
    weights = torch.rand(2, 3, 20, 26, generator=torch.Generator().manual_seed(3))
    taps = lopsided_taps(11)
    (separable_filter(images, taps) * weights).sum().backward()
    expected_images = images.detach().clone().requires_grad_()
    (correlation_2d(expected_images, taps) * weights).sum().backward()
    torch.testing.assert_close(images.grad, expected_images.grad, atol=FLOAT32_ATOL, rtol=0)


def test_gradcheck_in_double(without_native):
    images = torch.rand(1, 2, 9, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(4),
                        requires_grad=True)
    taps = lopsided_taps(5, torch.float64)
    assert torch.autograd.gradgradcheck(lambda x: separable_filter(x, taps), (images,))
    assert torch.autograd.gradcheck(lambda x: separable_filter(x, taps), (images,))


def test_bad_taps_are_named():
    images = torch.rand(4, 4)
    with pytest.raises(ValueError, match="odd length"):
        separable_filter(images, torch.ones(4))
    with pytest.raises(ValueError, match="odd length"):
        separable_filter(images, torch.ones(3, 3))
    with pytest.raises(ValueError, match="no gradient of its taps"):
        separable_filter(images, torch.ones(3, requires_grad=True))
    with pytest.raises(ValueError, match=r"\(\.\.\., H, W\)"):
        separable_filter(torch.ones(5), torch.ones(3))
