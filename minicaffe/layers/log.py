r"""Log: a logarithm of an affine map of the input, $y = \log_b(\alpha x + \beta)$.

Caffe: `log_layer.cpp` / `.cu`. Device twin: `opencl/log.cl`.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.common import MinicaffeError
from minicaffe.layer import register_layer
from minicaffe.layers.neuron import NeuronLayer


@register_layer
class LogLayer(NeuronLayer):
    r"""The logarithm to base $b$ (`base`) of $\alpha x + \beta$ (`scale`, `shift`), per element.

    $$ y = \log_b(\alpha x + \beta) = \frac{\ln(\alpha x + \beta)}{\ln b} \qquad
       \frac{\partial E}{\partial x} = \frac{\partial E}{\partial y}\,
       \frac{\alpha}{(\alpha x + \beta) \ln b} $$

    `base: -1` (the default) means $b = e$, with $\ln b$ taken as exactly 1. Any other base
    must be positive and not 1 (Caffe checks that $1/\ln b$ is finite). Inputs outside the
    domain ($\alpha x + \beta \le 0$) give NaN or $-\infty$ without an error, as in Caffe.

    The constants $1/\ln b$ and $\alpha/\ln b$ are worked out once in float32, and the
    float32 arithmetic follows Caffe's order (scale, shift, log, then the base), so the
    values are Caffe's to the rounding of `log` itself.

    Not for in-place use: backward reads the bottom data x, which in place holds y (Caffe
    computes the same wrong gradient then).

    Bottom: x, any shape.   Top: y, the shape of x.

        layer { name: "log2" type: "Log" bottom: "counts" top: "bits"
                log_param { base: 2 shift: 1 } }
    """

    type = "Log"

    def layer_setup(self, bottom, top):
        p = self.layer_param.log_param
        base = np.float32(p.base)
        if base != -1 and not base > 0:  # `not >` also catches NaN
            raise MinicaffeError(f"{self.type} layer {self.name!r}: log_param.base must be "
                                 f"strictly positive (or -1 for e), got {p.base}")
        with np.errstate(divide="ignore"):  # base 1 gives 1/0: reported below
            log_base = np.float32(1) if base == -1 else np.log(base)
            base_scale = np.float32(1) / log_base
        if not (np.isfinite(log_base) and np.isfinite(base_scale)):
            raise MinicaffeError(f"{self.type} layer {self.name!r}: log_param.base {p.base} gives "
                                 f"ln(base) = {log_base} and 1/ln(base) = {base_scale}; "
                                 f"both must be finite (base 1 has no logarithms)")
        self.base_scale = base_scale                                  # 1 / ln b
        self.scale, self.shift = np.float32(p.scale), np.float32(p.shift)
        self.backward_num_scale = self.scale / log_base               # alpha / ln b

    def forward_cpu(self, bottom, top):
        x = bottom[0].cpu_data()
        with np.errstate(divide="ignore", invalid="ignore"):  # log(<= 0): -inf / NaN, as Caffe
            top[0].mutable_cpu_data()[...] = np.log(x * self.scale + self.shift) * self.base_scale

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            x, dy = bottom[0].cpu_data(), top[0].cpu_diff()
            with np.errstate(divide="ignore", invalid="ignore"):
                inverse = np.float32(1) / (x * self.scale + self.shift)
                bottom[0].mutable_cpu_diff()[...] = dy * (inverse * self.backward_num_scale)

    def forward_gpu(self, bottom, top):
        opencl.kernel("log.cl", "log_forward")(
            bottom[0].count, bottom[0].gpu_data(), top[0].mutable_gpu_data(),
            self.scale, self.shift, self.base_scale)

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            opencl.kernel("log.cl", "log_backward")(
                bottom[0].count, top[0].gpu_diff(), bottom[0].gpu_data(),
                bottom[0].mutable_gpu_diff(), self.scale, self.shift, self.backward_num_scale)
