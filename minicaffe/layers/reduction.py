r"""Reduction: sum (or mean, or sum of |x| or x²) over all axes from `axis` on.

Caffe: `reduction_layer.cpp` / `.cu`. Device twin: `opencl/reduction.cl`.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.common import MinicaffeError
from minicaffe.layer import Layer, register_layer
from minicaffe.proto import caffe_pb2

SUM, ASUM, SUMSQ, MEAN = (caffe_pb2.ReductionParameter.SUM, caffe_pb2.ReductionParameter.ASUM,
                          caffe_pb2.ReductionParameter.SUMSQ, caffe_pb2.ReductionParameter.MEAN)


@register_layer
class ReductionLayer(Layer):
    r"""Reduce each trailing block of the bottom to one number, scaled by `coeff`.

    The axes before `axis` (default 0) are kept, the rest are reduced: the bottom is
    viewed as $N$ rows of $D$ values ($N$ = product of the dims before `axis`, $D$ the
    product of the others), and with $c$ = `coeff` (default 1):

    | operation | $y_n$ | $\partial E / \partial x_{nd}$ |
    |---|---|---|
    | SUM (default) | $c \sum_d x_{nd}$ | $c\, \partial E/\partial y_n$ |
    | ASUM | $c \sum_d \lvert x_{nd} \rvert$ | $c\, \operatorname{sign}(x_{nd})\, \partial E/\partial y_n$ |
    | SUMSQ | $c \sum_d x_{nd}^2$ | $2 c\, x_{nd}\, \partial E/\partial y_n$ |
    | MEAN | $\frac{c}{D} \sum_d x_{nd}$ | $\frac{c}{D}\, \partial E/\partial y_n$ |

    ($\operatorname{sign} 0 = 0$.) The top's shape is the bottom's dims before `axis`:
    with the default `axis: 0` the top is a scalar (shape `()`). As in Caffe, only
    trailing axes can be reduced; `axis` may be negative (-1 reduces the last axis only).

    On the device one work-group reduces one row (a tree in local memory), so a single
    row of many values is still shared out among the work-items.

    Bottom: x.   Top: y, of shape `x.shape[:axis]`.

        layer { name: "total" type: "Reduction" bottom: "x" top: "total"
                reduction_param { operation: SUMSQ axis: 1 coeff: 0.5 } }
    """

    type = "Reduction"
    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def layer_setup(self, bottom, top):
        self.op = self.layer_param.reduction_param.operation

    def reshape(self, bottom, top):
        param, x = self.layer_param.reduction_param, bottom[0]
        try:
            self.axis = x.canonical_axis_index(param.axis)
        except MinicaffeError:
            raise MinicaffeError(f"{self.type} layer {self.name!r}: axis {param.axis} is out of "
                                 f"range for bottom {x.name!r} of shape {x.shape}") from None
        top[0].reshape(x.shape[:self.axis])
        self.num, self.dim = x.count_range(0, self.axis), x.count_range(self.axis)
        # MEAN is SUM with the coefficient divided by the number of values summed.
        self.coeff = np.float32(param.coeff)
        if self.op == MEAN:
            self.coeff = np.float32(self.coeff / self.dim)

    def forward_cpu(self, bottom, top):
        x = bottom[0].cpu_data().reshape(self.num, self.dim)
        if self.op == ASUM:
            x = np.abs(x)
        elif self.op == SUMSQ:
            x = x * x
        top[0].mutable_cpu_data().reshape(self.num)[...] = x.sum(axis=1) * self.coeff

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dy = top[0].cpu_diff().reshape(self.num, 1) * self.coeff  # one factor per row
        dx = bottom[0].mutable_cpu_diff().reshape(self.num, self.dim)
        x = bottom[0].cpu_data().reshape(self.num, self.dim)
        if self.op == ASUM:
            dx[...] = np.sign(x) * dy
        elif self.op == SUMSQ:
            dx[...] = 2 * x * dy
        else:  # SUM, MEAN
            dx[...] = dy

    def forward_gpu(self, bottom, top):
        import pyopencl  # only the OpenCL engine comes here

        launcher = opencl.kernel("reduction.cl", "reduction_forward")
        group = launcher.work_group
        groups = min(self.num, max(1, opencl.device().max_global // group))
        scratch = pyopencl.LocalMemory(group * np.dtype(opencl.DTYPE).itemsize)
        launcher.launch((groups * group,), (group,), np.int32(self.num), np.int32(self.dim),
                        np.int32(self.op), self.coeff, bottom[0].gpu_data(),
                        top[0].mutable_gpu_data(), scratch)

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            opencl.kernel("reduction.cl", "reduction_backward")(
                bottom[0].count, np.int32(self.dim), np.int32(self.op), self.coeff,
                bottom[0].gpu_data(), top[0].gpu_diff(), bottom[0].mutable_gpu_diff())
