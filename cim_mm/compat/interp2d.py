"""SciPy >= 1.14: ``scipy.interpolate.interp2d`` raises NotImplementedError.

mmpretrain's ``resize_relative_position_bias_table`` and mmseg's
``BEiT._geometric_sequence_interpolation`` call
``interp2d(x, y, z, kind='cubic')(dx, dy)`` on a rectilinear grid to resize a
relative position bias table (fine-tuning a BEiT-style backbone at another
resolution, e.g. ADE20K 512 px). On such a grid interp2d fitted an
interpolating (s=0) tensor-product spline with FITPACK's knots, which is the
not-a-knot cubic spline along each axis, and evaluated it with the query
points clipped to the data range. :class:`Interp2dShim` computes exactly that
in torch (float64); :func:`apply` puts it in ``scipy.interpolate`` only where
interp2d is the removed stub, and :func:`shim_installed` does so for a block.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np
import torch


def spline_interp_matrix(x, xq, kind: str = 'cubic'):
    """Matrix ``A`` [len(xq), len(x)] with ``A @ y`` = the 1-D interpolating
    spline through ``(x, y)`` evaluated at ``xq`` (clipped to ``[x0, xn]``).

    ``kind='cubic'``: not-a-knot cubic spline (FITPACK's s=0 interpolant;
    fewer than 4 points: the interpolating polynomial); ``'linear'``:
    piecewise linear. ``x`` must be strictly increasing.
    """
    x = torch.as_tensor(x, dtype=torch.float64).flatten()
    xq = torch.as_tensor(xq, dtype=torch.float64).flatten()
    n = x.numel()
    if n == 0 or (n > 1 and not bool((x[1:] > x[:-1]).all())):
        raise ValueError('spline_interp_matrix: x must be strictly increasing')
    xq = xq.clamp(x[0], x[-1])
    if n == 1:
        return torch.ones(xq.numel(), 1, dtype=torch.float64)
    if kind == 'cubic' and n < 4:  # not-a-knot degenerates to the polynomial
        # Lagrange basis: A[q, j] = prod_{m != j} (xq - x_m) / (x_j - x_m)
        a = torch.ones(xq.numel(), n, dtype=torch.float64)
        for j in range(n):
            for m in range(n):
                if m != j:
                    a[:, j] *= (xq - x[m]) / (x[j] - x[m])
        return a
    h = x[1:] - x[:-1]  # [n-1]
    idx = torch.searchsorted(x, xq, right=True).clamp(1, n - 1) - 1  # interval
    lo, hi, hq = x[idx], x[idx + 1], h[idx]
    rows = torch.arange(xq.numel())
    a = torch.zeros(xq.numel(), n, dtype=torch.float64)
    if kind == 'linear':
        a[rows, idx] = (hi - xq) / hq
        a[rows, idx + 1] = (xq - lo) / hq
        return a
    if kind != 'cubic':
        raise NotImplementedError(f'spline_interp_matrix: kind={kind!r}')
    # second derivatives M = inv(L) @ R @ y
    L = torch.zeros(n, n, dtype=torch.float64)
    R = torch.zeros(n, n, dtype=torch.float64)
    for i in range(1, n - 1):
        L[i, i - 1], L[i, i], L[i, i + 1] = h[i - 1], 2 * (h[i - 1] + h[i]), h[i]
        R[i, i - 1], R[i, i], R[i, i + 1] = 6 / h[i - 1], -6 / h[i - 1] - 6 / h[i], 6 / h[i]
    # not-a-knot: the third derivative is continuous at x1 and x_{n-2}
    L[0, 0], L[0, 1], L[0, 2] = -h[1], h[0] + h[1], -h[0]
    L[-1, -3], L[-1, -2], L[-1, -1] = -h[-1], h[-2] + h[-1], -h[-2]
    Minv = torch.linalg.solve(L, R)  # [n, n]
    t1, t0 = xq - lo, hi - xq
    a[rows, idx] += t0 / hq
    a[rows, idx + 1] += t1 / hq
    cm0 = (t0 ** 3 / (6 * hq) - hq * t0 / 6)[:, None]  # weight of M_i
    cm1 = (t1 ** 3 / (6 * hq) - hq * t1 / 6)[:, None]  # weight of M_{i+1}
    return a + cm0 * Minv[idx] + cm1 * Minv[idx + 1]


def spline_interp2d(x, y, z, xq, yq, kind: str = 'cubic'):
    """``interp2d(x, y, z, kind)(xq, yq)`` on a rectilinear grid, in torch.

    ``z`` is ``[len(y), len(x)]`` (row = y); returns ``[len(yq), len(xq)]``
    float64 tensor.
    """
    z = torch.as_tensor(z, dtype=torch.float64)
    ax = spline_interp_matrix(x, xq, kind)  # [nxq, nx]
    ay = spline_interp_matrix(y, yq, kind)  # [nyq, ny]
    return ay @ z @ ax.T


class Interp2dShim:
    """Drop-in for the removed ``scipy.interpolate.interp2d`` on rectilinear
    grids (``kind`` 'linear' or 'cubic', no ``fill_value``/``bounds_error``),
    the way mmpretrain and mmseg call it. Anything else raises SciPy's own
    NotImplementedError."""

    _cim_mm_shim = True

    def __init__(self, x, y, z, kind='linear', copy=True, bounds_error=False,
                 fill_value=None):
        x, y, z = np.ravel(x), np.ravel(y), np.asarray(z)
        if (kind not in ('linear', 'cubic') or bounds_error or fill_value is not None
                or z.ndim != 2 or z.shape != (y.size, x.size)):
            raise NotImplementedError(
                'scipy.interpolate.interp2d was removed in SciPy 1.14; the '
                "cim_mm shim only covers rectilinear grids with kind='linear'|"
                "'cubic' (use RectBivariateSpline)")
        ix, iy = np.argsort(x), np.argsort(y)
        self.x, self.y, self.z, self.kind = x[ix], y[iy], z[iy][:, ix], kind

    def __call__(self, x, y, dx=0, dy=0, assume_sorted=False):
        if dx or dy:
            raise NotImplementedError('interp2d shim: derivatives are not supported')
        x, y = np.atleast_1d(x), np.atleast_1d(y)
        if not assume_sorted:
            x, y = np.sort(x), np.sort(y)
        out = spline_interp2d(self.x, self.y, self.z, x, y, self.kind).numpy()
        return out[0] if out.shape[0] == 1 else out


def _interpolate() -> Any:
    """``scipy.interpolate``, or None without SciPy (then nothing calls interp2d)."""
    try:
        from scipy import interpolate  # optional: only BEiT-style resizes need it
    except ImportError:
        return None
    return interpolate


def needed() -> bool:
    """SciPy's ``interp2d`` is the removed stub (SciPy >= 1.14)."""
    interpolate = _interpolate()
    if interpolate is None:
        return False
    current = getattr(interpolate, 'interp2d', None)
    if current is None or getattr(current, '_cim_mm_shim', False):
        return True  # removed from SciPy, or our shim already
    try:
        current([0., 1.], [0., 1.], [[0., 1.], [1., 2.]], kind='linear')
        return False  # a working interp2d (SciPy < 1.14): leave it
    except NotImplementedError:
        return True
    except Exception:  # noqa: BLE001  (unexpected: leave SciPy alone)
        return False


def applied() -> bool:
    interpolate = _interpolate()
    return getattr(getattr(interpolate, 'interp2d', None), '_cim_mm_shim', False)


def apply() -> bool:
    """Put :class:`Interp2dShim` in ``scipy.interpolate`` where SciPy's own
    ``interp2d`` is the removed stub. Returns whether the shim is in place."""
    if applied():
        return True
    if not needed():
        return False
    _interpolate().interp2d = Interp2dShim
    return True


@contextlib.contextmanager
def shim_installed() -> Iterator[None]:
    """The shim in ``scipy.interpolate`` for the block only (where it is needed);
    SciPy is left as it was afterwards."""
    interpolate = _interpolate()
    before = getattr(interpolate, 'interp2d', None) if interpolate is not None else None
    apply()
    try:
        yield
    finally:
        if interpolate is not None and before is not None:
            interpolate.interp2d = before
