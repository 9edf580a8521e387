"""UNet3D: shapes for valid and same padding, output range, configuration errors, CUDA paths."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xpress_fast.unet import DEFAULT_OFFSETS, UNet3D, default_offsets  # noqa: E402
from reference_unet import he_init  # noqa: E402

TINY = dict(num_fmaps=2, fmap_inc_factor=2)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def test_defaults():
    m = UNet3D()
    assert m.out_channels == 12 == len(DEFAULT_OFFSETS)
    assert list(DEFAULT_OFFSETS[:3]) == [(-1, 0, 0), (0, -1, 0), (0, 0, -1)]
    assert (0, 0, -27) in DEFAULT_OFFSETS and (-9, 0, 0) in DEFAULT_OFFSETS
    assert m.padding == "same"
    assert default_offsets(()) == [(-1, 0, 0), (0, -1, 0), (0, 0, -1)]


@pytest.mark.parametrize("shape", [(8, 8, 8), (12, 16, 20), (5, 9, 7)])
@pytest.mark.parametrize("factors", [((2, 2, 2),), ((1, 2, 2), (2, 2, 2))])
def test_same_padding_keeps_shape(shape, factors):
    m = UNet3D(downsample_factors=factors, **TINY)
    x = torch.rand((2, 1) + shape)
    with torch.no_grad():
        y = m(x)
    assert y.shape == (2, 12) + shape
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert m.output_shape(shape) == shape


@pytest.mark.parametrize("factors", [((2, 2, 2),), ((2, 2, 2), (2, 2, 2)), ((1, 3, 3),)])
@pytest.mark.parametrize("num_convs", [1, 2])
def test_valid_padding_shapes(factors, num_convs):
    m = UNet3D(downsample_factors=factors, padding="valid", num_convs=num_convs, **TINY)
    inp = m.valid_input_shape((4, 5, 6))
    out = m.output_shape(inp)
    assert all(o >= w for o, w in zip(out, (4, 5, 6)))
    with torch.no_grad():
        y = m(torch.rand((1, 1) + inp))
    assert tuple(y.shape[2:]) == out
    # the context is symmetric and the same for every valid size
    ctx = m.context
    assert all(i - o == 2 * c for i, o, c in zip(inp, out, ctx))
    bigger = m.valid_input_shape(tuple(o + 1 for o in out))
    assert all(i - o == 2 * c for i, o, c in zip(bigger, m.output_shape(bigger), ctx))
    # a size that does not fit the pooling grid is refused with a hint
    with pytest.raises(ValueError, match="does not fit"):
        m.output_shape(tuple(i + 1 for i in inp) if factors[0] != (1, 3, 3) else (inp[0], inp[1] + 1, inp[2]))


def test_valid_output_is_centre_of_same_context():
    # valid padding sees no zeros: the output at a voxel depends only on its context window
    torch.manual_seed(0)
    m = he_init(UNet3D(padding="valid", downsample_factors=((2, 2, 2),), **TINY).eval())
    inp = m.valid_input_shape((4, 4, 4))
    x = torch.rand((1, 1) + tuple(i + 2 for i in inp))
    with torch.no_grad():
        full = m(x)
        part = m(x[:, :, 2:, 2:, 2:])
    torch.testing.assert_close(full[:, :, 2:, 2:, 2:], part)
    assert float(full.std(dim=(2, 3, 4)).min()) > 1e-3  # the check is not vacuous


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(padding="full"), ValueError, "padding must be 'valid' or 'same'"),
        (dict(norm="layer"), ValueError, "norm must be"),
        (dict(num_fmaps=0), ValueError, "must be >= 1"),
        (dict(kernel_size=2), ValueError, "kernel_size must be a positive odd"),
        (dict(downsample_factors=((2, 2),)), ValueError, "downsample_factors must be three"),
        (dict(downsample_factors=(None,)), TypeError, "downsample_factors must be an int"),
        (dict(offsets=[(0, 0, 0)]), ValueError, "offsets must be a non-empty list"),
        (dict(offsets=[]), ValueError, "offsets must be a non-empty list"),
    ],
)
def test_config_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        UNet3D(**kwargs)


def test_input_errors():
    m = UNet3D(**TINY)
    with pytest.raises(ValueError, match="5-dimensional"):
        m(torch.zeros(1, 8, 8, 8))
    with pytest.raises(ValueError, match="1 channel"):
        m(torch.zeros(1, 2, 8, 8, 8))


def test_batch_norm_eval_is_per_sample():
    m = he_init(UNet3D(norm="batch", **TINY).eval())
    x = torch.rand(2, 1, 8, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(m(x)[1:], m(x[1:]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_amp_channels_last_matches_cpu():
    torch.manual_seed(0)
    m = UNet3D(**TINY).eval()
    x = torch.rand(1, 1, 16, 16, 16)
    with torch.no_grad():
        ref = m(x)
        mc = m.to("cuda").to(memory_format=torch.channels_last_3d)
        xc = x.to("cuda").contiguous(memory_format=torch.channels_last_3d)
        with torch.autocast("cuda", dtype=torch.float16):
            y = mc(xc)
    np.testing.assert_allclose(y.float().cpu().numpy(), ref.numpy(), atol=1e-2)
