r"""Power: a power of an affine map of the input, $y = (\alpha x + \beta)^\gamma$.

Caffe: `power_layer.cpp` / `.cu`. Device twin: `opencl/power.cl`.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.layer import register_layer
from minicaffe.layers.neuron import NeuronLayer


@register_layer
class PowerLayer(NeuronLayer):
    r"""$(\alpha x + \beta)^\gamma$ per element, with $\gamma$ = `power`, $\alpha$ = `scale`,
    $\beta$ = `shift` (defaults 1, 1, 0: the identity).

    $$ y = (\alpha x + \beta)^\gamma \qquad
       \frac{\partial E}{\partial x} = \frac{\partial E}{\partial y}\,
       \alpha\gamma\,(\alpha x + \beta)^{\gamma - 1}
       = \frac{\partial E}{\partial y}\, \frac{\alpha\gamma\, y}{\alpha x + \beta} $$

    Caffe's special cases, kept because they decide what happens at the edges:

    * $\alpha\gamma = 0$ (power 0 or scale 0): the input is ignored; y is the constant
      1 (power 0) or $\beta^\gamma$, and the gradient is 0.
    * $\gamma = 1$: $y = \alpha x + \beta$, gradient $\alpha$.
    * $\gamma = 2$: gradient $2\alpha(\alpha x + \beta)$, finite everywhere.
    * otherwise the gradient is $\alpha\gamma\, y / (\alpha x + \beta)$ (as $\gamma\, y / x$
      when $\beta = 0$), which is NaN where $\alpha x + \beta = 0$ even when the true
      derivative is 0 ($\gamma > 1$). A negative base with a fractional power gives NaN
      forward. Neither raises an error, as in Caffe.

    Not for in-place use unless $\gamma = 1$ or $\alpha\gamma = 0$: backward reads both x
    and y (Caffe has the same limit).

    Bottom: x, any shape.   Top: y, the shape of x.

        layer { name: "square" type: "Power" bottom: "diff" top: "sq" power_param { power: 2 } }
    """

    type = "Power"

    def layer_setup(self, bottom, top):
        p = self.layer_param.power_param
        # float32 constants, so that the arithmetic is Caffe's float arithmetic.
        self.power, self.scale, self.shift = np.float32(p.power), np.float32(p.scale), np.float32(p.shift)
        self.diff_scale = self.power * self.scale  # alpha gamma: 0 means y ignores x

    def constant_top(self) -> np.float32:
        """y when it does not depend on x (diff_scale 0): 1 for power 0, else shift^power."""
        with np.errstate(invalid="ignore"):  # a negative shift to a fractional power: NaN
            return np.float32(1) if self.power == 0 else np.power(self.shift, self.power)

    def forward_cpu(self, bottom, top):
        y = top[0].mutable_cpu_data()
        if self.diff_scale == 0:
            y[...] = self.constant_top()
            return
        u = bottom[0].cpu_data() * self.scale + self.shift
        with np.errstate(divide="ignore", invalid="ignore"):  # e.g. (-1)^0.5 = NaN, as Caffe
            y[...] = u if self.power == 1 else np.power(u, self.power)

    def backward_cpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        dx = bottom[0].mutable_cpu_diff()
        if self.diff_scale == 0:
            dx[...] = 0
            return
        x, dy = bottom[0].cpu_data(), top[0].cpu_diff()
        with np.errstate(divide="ignore", invalid="ignore"):  # y / u at u = 0: NaN, as Caffe
            if self.power == 1:
                dydx = self.diff_scale
            elif self.power == 2:
                dydx = x * (self.diff_scale * self.scale) + self.diff_scale * self.shift
            elif self.shift == 0:
                dydx = top[0].cpu_data() / x * self.power
            else:
                dydx = top[0].cpu_data() / (x * self.scale + self.shift) * self.diff_scale
            dx[...] = dy * dydx

    def forward_gpu(self, bottom, top):
        if self.diff_scale == 0:
            opencl.fill(top[0].mutable_gpu_data(), top[0].count, self.constant_top())
            return
        opencl.kernel("power.cl", "power_forward")(
            bottom[0].count, bottom[0].gpu_data(), top[0].mutable_gpu_data(),
            self.power, self.scale, self.shift)

    def backward_gpu(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        if self.diff_scale == 0:
            opencl.fill(bottom[0].mutable_gpu_diff(), bottom[0].count, 0.0)
            return
        opencl.kernel("power.cl", "power_backward")(
            bottom[0].count, top[0].gpu_diff(), bottom[0].gpu_data(), top[0].gpu_data(),
            bottom[0].mutable_gpu_diff(), self.power, self.scale, self.shift, self.diff_scale)
