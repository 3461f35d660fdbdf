r"""im2col and col2im: how a convolution becomes one matrix product (Caffe's `im2col.cpp`).

A convolution slides a kernel of size $k_1 \times \dots \times k_d$ over an input of
$C$ channels and spatial size $S_1 \times \dots \times S_d$. Along spatial axis $a$, with
padding $p_a$, stride $s_a$ and dilation $r_a$, the kernel's extent is
$e_a = r_a (k_a - 1) + 1$ and the output has

$$ O_a = \left\lfloor \frac{S_a + 2 p_a - e_a}{s_a} \right\rfloor + 1 $$

positions. **im2col** copies every receptive field into one column of a matrix:
the entry for channel $c$, kernel offset $\mathbf{i}$ and output position $\mathbf{o}$ is

$$ \mathrm{col}[(c, \mathbf{i}),\ \mathbf{o}] = x_{\mathrm{pad}}[c,\ \mathbf{o} \odot \mathbf{s}
   + \mathbf{i} \odot \mathbf{r}] $$

where $x_{\mathrm{pad}}$ is the input with $p_a$ zeros on both sides of axis $a$. Rows are
ordered $(c, i_1, \dots, i_d)$, exactly the order of a weight blob
$(\text{num\_output}, C, k_1, \dots, k_d)$ flattened to $(\text{num\_output}, C \prod k)$;
the convolution is then the matrix product $W \cdot \mathrm{col}$.

**col2im** is the adjoint (transpose) of im2col: every column entry is *added* back to the
input pixel it was copied from, and entries that came from the padding are dropped.
So for any $x$ and $y$, $\langle \mathrm{col2im}(y), x \rangle = \langle y, \mathrm{im2col}(x) \rangle$,
which is what backpropagation through im2col needs: $\partial E/\partial x =
\mathrm{col2im}(\partial E/\partial \mathrm{col})$.

Two layouts of the batch
------------------------
Both functions take a batch $x$ of shape (N, C, S_1, ..., S_d) and offer two layouts of
`col`; the rows are the same $(c, \mathbf{i})$ in both, only the columns differ:

* `batch_last=False` (Caffe's layout, stacked): `col` has shape (N, C·∏k, ∏O): one
  Caffe column matrix per image. The convolution is a *batched* matrix product, and its
  result is already in the (N, num_output, ∏O) layout of the top blob.
* `batch_last=True`: `col` has shape (C·∏k, ∏O·N), the columns ordered (output position,
  image) with the image index fastest. The convolution is *one* matrix product for the
  whole batch, whose result (num_output, ∏O, N) needs one transpose into the top blob.

Why two: numpy is fast on long contiguous runs and slow on short ones. In Caffe's
layout the copy moves runs of $O_d$ values (one output row); when the output plane is small
(8 x 8 in LeNet's conv2) those runs are short and the per-image products are small. With
the batch last, a run is $O_d \cdot N$ values and the product is one large GEMM, at the
price of transposing the input and the output. `layers/base_conv.py` picks the layout
(`_batch_last`, with the measurements).

Neither function loops over pixels: im2col is a single copy out of a strided *view*
(`numpy.lib.stride_tricks.as_strided`) of the padded input, and col2im loops only over the
$\prod k$ kernel offsets, adding one strided slab per offset.
"""
from __future__ import annotations

from math import prod

import numpy as np
from numpy.lib.stride_tricks import as_strided

from minicaffe.common import MinicaffeError


def conv_out_shape(spatial, kernel, pad, stride, dilation) -> tuple[int, ...]:
    """Output size per spatial axis: floor((S + 2p - (r(k-1)+1)) / s) + 1.

    Raises MinicaffeError when the kernel's extent exceeds the padded input.
    """
    out = []
    for axis, (s, k, p, st, r) in enumerate(zip(spatial, kernel, pad, stride, dilation)):
        extent = r * (k - 1) + 1
        if s + 2 * p < extent:
            raise MinicaffeError(
                f"spatial axis {axis}: kernel extent {extent} (kernel {k}, dilation {r}) is "
                f"larger than the padded input {s} + 2*{p} = {s + 2 * p}")
        out.append((s + 2 * p - extent) // st + 1)
    return tuple(out)


def _window_view(xp: np.ndarray, kernel, stride, dilation, out_spatial, batch_last: bool):
    """A read-only view of the receptive fields, no copy.

    Caffe's layout: (N, C, *k, *O) from xp of shape (N, C, *S_pad).
    Batch last:     (C, *k, *O, N) from xp of shape (C, *S_pad, N).
    Along a spatial axis a kernel step moves r_a pixels and an output step s_a pixels.
    """
    d = len(kernel)
    if batch_last:
        sc, *ss, sn = xp.strides
        shape = (xp.shape[0], *kernel, *out_spatial, xp.shape[-1])
        strides = (sc, *(s * r for s, r in zip(ss, dilation)),
                   *(s * st for s, st in zip(ss, stride)), sn)
    else:
        sn, sc, *ss = xp.strides
        shape = (xp.shape[0], xp.shape[1], *kernel, *out_spatial)
        strides = (sn, sc, *(s * r for s, r in zip(ss, dilation)),
                   *(s * st for s, st in zip(ss, stride)))
    assert len(ss) == d
    return as_strided(xp, shape, strides, writeable=False)


class Im2col:
    """im2col for inputs of one shape, worked out once and called for each new input.

    The geometry (output size, the strided window view) is computed here, and the padded
    copy of the input is kept between calls, its zero border written only once: a call
    just copies the input into the interior and the windows into the columns. At batch 1
    (best of 9, one thread) this cuts the Python around the copies (a 3x3 convolution's
    forward on a 2x2 input: 11 us against 25-34 us) and the copies themselves (SqueezeNet's
    fire2/expand3x3 0.08 ms against 0.10 ms, CaffeNet's conv1 0.39 against 0.61).
    Convolution layers keep one per input shape (`layers/base_conv.py`); `im2col()` makes
    one per call.
    """

    def __init__(self, x_shape, kernel, pad, stride, dilation, batch_last: bool = False,
                 dtype=np.float32):
        n, c, *spatial = x_shape
        kernel, pad, stride, dilation = (tuple(v) for v in (kernel, pad, stride, dilation))
        self.kernel, self.stride, self.dilation = kernel, stride, dilation
        self.batch_last = batch_last
        self.out_spatial = conv_out_shape(spatial, kernel, pad, stride, dilation)
        rows, cols = c * prod(kernel), prod(self.out_spatial)
        self.shape = (rows, cols * n) if batch_last else (n, rows, cols)
        self._padded = None  # Caffe's layout without padding reads the windows from x itself
        if batch_last or any(pad):
            # x with zeros around the spatial axes; with batch_last moved to (C, *S, N).
            inner = tuple(slice(p, p + s) for p, s in zip(pad, spatial))
            padded_spatial = tuple(s + 2 * p for s, p in zip(spatial, pad))
            if batch_last:
                self._padded = np.zeros((c, *padded_spatial, n), dtype=dtype)
                self._interior = self._padded[(slice(None), *inner, slice(None))]
            else:
                self._padded = np.zeros((n, c, *padded_spatial), dtype=dtype)
                self._interior = self._padded[(slice(None), slice(None), *inner)]
            self._windows = self._window_view(self._padded)

    def _window_view(self, xp):
        return _window_view(xp, self.kernel, self.stride, self.dilation, self.out_spatial,
                            self.batch_last)

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The columns of `x`, written to `out` (a buffer of at least that many values)
        if given; see `im2col`."""
        if self._padded is None:
            windows = self._window_view(x)
        else:
            self._interior[...] = np.moveaxis(x, 0, -1) if self.batch_last else x
            windows = self._windows
        shape = self.shape
        col = np.empty(shape, dtype=x.dtype) if out is None else out[: prod(shape)].reshape(shape)
        col.reshape(windows.shape)[...] = windows
        return col


def im2col(x: np.ndarray, kernel, pad, stride, dilation, out: np.ndarray | None = None,
           batch_last: bool = False) -> np.ndarray:
    """Copy every receptive field of the batch `x` (N, C, *S) into a column.

    Returns (N, C·∏k, ∏O), or with `batch_last` (C·∏k, ∏O·N); see the module docstring.
    `out`, if given, is a float32 buffer of at least that many values and is filled.
    A 1x1 kernel with stride 1 and no padding needs no copy in Caffe's layout: the
    input itself, viewed as (N, C, ∏S), is the column matrix.
    """
    if not batch_last and all(k == 1 for k in kernel) and all(s == 1 for s in stride) \
            and not any(pad) and out is None:
        n, c, *spatial = x.shape
        conv_out_shape(spatial, kernel, pad, stride, dilation)  # the checks
        return x.reshape(n, c, prod(spatial))
    return Im2col(x.shape, kernel, pad, stride, dilation, batch_last, x.dtype)(x, out)


def col2im(col: np.ndarray, x_shape, kernel, pad, stride, dilation,
           out: np.ndarray | None = None, batch_last: bool = False) -> np.ndarray:
    """The adjoint of `im2col`: add every column entry back onto its input pixel.

    `col` is laid out as `im2col` returns it for an input of shape `x_shape`
    (N, C, *S); the result has shape `x_shape` and is written to `out` if given.
    Loops over the ∏k kernel offsets; each adds one strided slab of the padded image.
    """
    n, c, *spatial = x_shape
    kernel, pad, stride, dilation = (tuple(v) for v in (kernel, pad, stride, dilation))
    out_spatial = conv_out_shape(spatial, kernel, pad, stride, dilation)
    padded_spatial = tuple(s + 2 * p for s, p in zip(spatial, pad))
    if batch_last:
        fields = col.reshape(c, *kernel, *out_spatial, n)
        xp = np.zeros((c, *padded_spatial, n), dtype=col.dtype)
    else:
        fields = col.reshape(n, c, *kernel, *out_spatial)
        xp = np.zeros((n, c, *padded_spatial), dtype=col.dtype)
    for offset in np.ndindex(*kernel):
        # The input pixels kernel offset i touches: i*r, i*r + s, ..., one per output position.
        slab = tuple(slice(i * r, i * r + st * (o - 1) + 1, st)
                     for i, r, st, o in zip(offset, dilation, stride, out_spatial))
        if batch_last:
            xp[(slice(None), *slab, slice(None))] += fields[(slice(None), *offset)]
        else:
            xp[(slice(None), slice(None), *slab)] += fields[(slice(None), slice(None), *offset)]
    inner = tuple(slice(p, p + s) for p, s in zip(pad, spatial))
    if batch_last:
        result = np.moveaxis(xp[(slice(None), *inner, slice(None))], -1, 0)
    else:
        result = xp[(slice(None), slice(None), *inner)]
    if out is None:
        return np.ascontiguousarray(result)
    out[...] = result
    return out
