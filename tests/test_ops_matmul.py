"""``xcam.ops.matmul_inline``: a @ b in BLAS calls small enough for OpenBLAS to run each in the calling thread."""

import numpy as np
import pytest

from xcam import ops
from xcam.ops import matmul_inline

CASES = [((100, 128), (128, 128)),            # LeGrad's value projection: 15 rows a call, padded
         ((3, 7), (7,)),                      # matrix times vector, one call
         ((5000, 40), (40,)),                 # matrix times vector: a zero partner column, rows in chunks
         ((2, 4, 50, 32), (2, 4, 32, 50)),    # stacks
         ((2, 1, 30, 8), (3, 8, 6)),          # stacks that broadcast
         ((300, 3000), (3000, 5)),
         ((4, 64), (64, 9000)),               # two rows of b's columns are over: columns in blocks
         ((1, 50), (50, 3000)),               # one row: a zero partner row
         ((50,), (50, 3000)), ((7,), (7,)),   # vectors
         ((10, 200000), (200000, 2))]         # one row times one column is over: NumPy's own loop


@pytest.mark.parametrize("sa, sb", CASES)
def test_matmul_inline_is_the_product(sa, sb):
    rng = np.random.RandomState(0)
    a, b = rng.rand(*sa).astype(np.float32), rng.rand(*sb).astype(np.float32)
    want = np.matmul(a.astype(np.float64), b.astype(np.float64))
    got = matmul_inline(a, b)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=3e-5 if sb[0] > 10000 else 2e-6)
    ints = np.arange(np.prod(sa)).reshape(sa) % 7, np.arange(np.prod(sb)).reshape(sb) % 5
    np.testing.assert_array_equal(matmul_inline(*(x.astype(np.float64) for x in ints)), np.matmul(*ints))


def test_every_blas_call_stays_under_the_threading_thresholds(monkeypatch):
    """The products handed to np.matmul: at least 2 x 2 (NumPy gives a single row or column to gemv) and m n k
    under OpenBLAS's gemm threshold (65536 x 4)."""
    calls = []
    real = np.matmul

    def spy(a, b, *args, **kw):
        calls.append((a.shape[-2], a.shape[-1], b.shape[-1]))
        return real(a, b, *args, **kw)

    monkeypatch.setattr(ops.np, "matmul", spy)
    rng = np.random.RandomState(1)
    for sa, sb in CASES[:-1]:
        calls.clear()
        matmul_inline(rng.rand(*sa), rng.rand(*sb))
        assert calls
        for m, k, n in calls:
            assert m > 1 and n > 1 and m * k * n < 65536 * 4, (sa, sb, m, k, n)


@pytest.mark.parametrize("shape", [(10240, 16), (4, 64, 49), (3, 5, 65), (2, 3), (7, 1), (1, 40), (0, 9)])
def test_min_max_last_is_numpy_min_and_max_on_both_paths(shape):
    from xcam.ops import min_max_last
    values = np.random.default_rng(len(shape)).standard_normal(shape).astype(np.float32)
    if values.size:
        values.reshape(-1, shape[-1])[0, -1] = -50.0                # an extreme in the last column of a row
        values.reshape(-1, shape[-1])[-1, 0] = 60.0                 # and in the first column of another
    lo, hi = min_max_last(values)
    assert lo.shape == hi.shape == shape[:-1] + (1,)
    np.testing.assert_array_equal(lo, values.min(axis=-1, keepdims=True))
    np.testing.assert_array_equal(hi, values.max(axis=-1, keepdims=True))
    assert values.size == 0 or (lo.min() == -50.0 and hi.max() == 60.0)
