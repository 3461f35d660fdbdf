r"""InnerProduct: the fully connected layer, $y = W x + b$ (Caffe's `inner_product_layer.cpp`).

Shapes. The axes of the bottom before `axis` (default 1) index separate examples, the
rest are flattened into one input vector: $M = \prod_{a < \text{axis}} S_a$ examples of
$K = \prod_{a \ge \text{axis}} S_a$ inputs each. With $N$ = `num_output`:

weight $W$: $(N, K)$, or $(K, N)$ with `transpose: true`; bias $b$: $(N)$;
top: $(S_0, \dots, S_{\text{axis}-1}, N)$.

Forward, for the bottom viewed as a matrix $X$ of shape $(M, K)$:

$$ Y = X W^\top + \mathbf{1} b^\top \qquad (\text{with transpose: } Y = X W + \mathbf{1} b^\top) $$

Backward, from $\partial E/\partial Y$ of shape $(M, N)$:

$$ \frac{\partial E}{\partial W} \mathrel{+}= \Big(\frac{\partial E}{\partial Y}\Big)^{\!\top} X
   \quad \Big(\text{transpose: } X^\top \frac{\partial E}{\partial Y}\Big), \qquad
   \frac{\partial E}{\partial b} \mathrel{+}= \mathbf{1}^\top \frac{\partial E}{\partial Y}, \qquad
   \frac{\partial E}{\partial X} = \frac{\partial E}{\partial Y}\, W
   \quad \Big(\text{transpose: } \frac{\partial E}{\partial Y} W^\top\Big) $$

Each is one GEMM over the whole batch; numpy hands the transposed operands to BLAS as
flags, without copying them, and the device GEMM (`opencl/gemm.cl`) takes the same flags.

Device twin: `opencl/inner_product.cl` (the bias: added to every row forward, summed
down the columns backward; the products are `opencl_gemm.gemm` calls).

    layer {
      name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1"
      param { lr_mult: 1 } param { lr_mult: 2 }
      inner_product_param {
        num_output: 500
        weight_filler { type: "xavier" } bias_filler { type: "constant" }
      }
    }
"""
from __future__ import annotations

import numpy as np

from minicaffe import opencl, opencl_gemm
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.filler import fill
from minicaffe.layer import Layer, register_layer


@register_layer
class InnerProductLayer(Layer):
    """Fully connected layer; see the module docstring."""

    type = "InnerProduct"
    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def _error(self, message: str) -> MinicaffeError:
        return MinicaffeError(f"{self.type} layer {self.name!r}: {message}")

    def _axis(self, x: Blob) -> int:
        try:
            return x.canonical_axis_index(self.layer_param.inner_product_param.axis)
        except MinicaffeError as err:
            raise self._error(str(err)) from None

    def layer_setup(self, bottom, top):
        p = self.layer_param.inner_product_param
        self.num_output = p.num_output
        if self.num_output <= 0:
            raise self._error("inner_product_param.num_output must be specified and positive")
        self.bias_term, self.transpose = p.bias_term, p.transpose
        self.axis = self._axis(bottom[0])
        self.K = bottom[0].count_range(self.axis)
        weight_shape = (self.K, self.num_output) if self.transpose else (self.num_output, self.K)
        if self.blobs:
            if len(self.blobs) != 1 + self.bias_term:
                raise self._error(f"expected {1 + self.bias_term} parameter blob(s), "
                                  f"got {len(self.blobs)}")
            if self.blobs[0].shape != weight_shape:
                raise self._error(f"weight shape {self.blobs[0].shape} given, expected "
                                  f"{weight_shape} for bottom {bottom[0].shape} at axis {self.axis}")
            if self.bias_term and self.blobs[1].count != self.num_output:
                raise self._error(f"bias shape {self.blobs[1].shape} given, "
                                  f"expected {(self.num_output,)}")
        else:
            self.blobs.append(Blob(weight_shape, name=f"{self.name}.weight"))
            fill(self.blobs[0], p.weight_filler)
            if self.bias_term:
                self.blobs.append(Blob((self.num_output,), name=f"{self.name}.bias"))
                fill(self.blobs[1], p.bias_filler)
        self.param_propagate_down = [True] * len(self.blobs)

    def reshape(self, bottom, top):
        x = bottom[0]
        axis = self._axis(x)
        if x.count_range(axis) != self.K:
            which = f"bottom {x.name!r}" if x.name else "the bottom"
            raise self._error(f"{which} of shape {x.shape} has {x.count_range(axis)} "
                              f"inputs per example from axis {axis}, the weights expect {self.K}")
        self.M = x.count_range(0, axis)
        top[0].reshape((*x.shape[:axis], self.num_output))

    def forward_cpu(self, bottom, top):
        x = bottom[0].cpu_data().reshape(self.M, self.K)
        w = self.blobs[0].cpu_data()
        y = top[0].mutable_cpu_data().reshape(self.M, self.num_output)
        np.matmul(x, w if self.transpose else w.T, out=y)
        if self.bias_term:
            y += self.blobs[1].cpu_data().reshape(-1)

    def backward_cpu(self, top, propagate_down, bottom):
        dy = top[0].cpu_diff().reshape(self.M, self.num_output)
        if self.param_propagate(0):
            x = bottom[0].cpu_data().reshape(self.M, self.K)
            dw = self.blobs[0].mutable_cpu_diff()
            if self.transpose:
                add_product(dw, x.T, dy)
            else:
                add_product(dw, dy.T, x)
        if self.bias_term and self.param_propagate(1):
            self.blobs[1].mutable_cpu_diff().reshape(-1)[...] += dy.sum(axis=0)
        if propagate_down[0]:
            w = self.blobs[0].cpu_data()
            dx = bottom[0].mutable_cpu_diff().reshape(self.M, self.K)
            np.matmul(dy, w.T if self.transpose else w, out=dx)

    def forward_gpu(self, bottom, top):
        M, N, K = self.M, self.num_output, self.K
        x, w, y = bottom[0].gpu_data(), self.blobs[0].gpu_data(), top[0].mutable_gpu_data()
        # Y = X Wᵀ (or X W)
        opencl_gemm.gemm(False, not self.transpose, M, N, K, 1.0, x, w, 0.0, y)
        if self.bias_term:
            opencl.kernel("inner_product.cl", "inner_product_bias_forward")(
                M * N, self.blobs[1].gpu_data(), np.int32(N), y)

    def backward_gpu(self, top, propagate_down, bottom):
        M, N, K = self.M, self.num_output, self.K
        dy = top[0].gpu_diff()
        if self.param_propagate(0):
            x, dw = bottom[0].gpu_data(), self.blobs[0].mutable_gpu_diff()
            if self.transpose:  # dW (K x N) += Xᵀ dY
                opencl_gemm.gemm(True, False, K, N, M, 1.0, x, dy, 1.0, dw)
            else:               # dW (N x K) += dYᵀ X
                opencl_gemm.gemm(True, False, N, K, M, 1.0, dy, x, 1.0, dw)
        if self.bias_term and self.param_propagate(1):
            opencl.kernel("inner_product.cl", "inner_product_bias_backward")(
                N, dy, np.int32(M), self.blobs[1].mutable_gpu_diff())
        if propagate_down[0]:  # dX = dY op(W)ᵀ
            w, dx = self.blobs[0].gpu_data(), bottom[0].mutable_gpu_diff()
            opencl_gemm.gemm(False, self.transpose, M, K, N, 1.0, dy, w, 0.0, dx)


BAND_BYTES = 1 << 18  # of `out` per product in add_product: 256 KiB was best (1 and 4 MiB slower)


def add_product(out: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """out += a @ b, for a band of out's rows (BAND_BYTES worth) at a time.

    numpy cannot add a product into an array (BLAS's beta = 1), so `out += a @ b` first
    writes the whole product to a temporary as large as the weights: for CaffeNet's fc6
    (4096 x 9216, 151 MB) at batch 1 it takes 80 ms. Band by band the temporary stays in
    cache: 16 ms at batch 4 (61 ms whole). At batch 1 the product is an outer product,
    which OpenBLAS does slowly as a GEMM, and a broadcast multiply does it: 14 ms.
    (Best of 7, one thread; LeNet's ip1 at batch 64 takes 0.42 ms either way.)
    """
    step = max(1, BAND_BYTES // (out.itemsize * out.shape[1]))
    for r in range(0, out.shape[0], step):
        band = a[r:r + step]
        out[r:r + step] += band * b if a.shape[1] == 1 else band @ b
