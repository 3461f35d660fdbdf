r"""Convolution: learned filters slid over the input (Caffe's `conv_layer.cpp`).

Shapes. The bottom has shape $(N, C, S_1, \dots, S_d)$ (with `axis` = 1; a larger `axis`
folds the leading axes into $N$). With $K$ = `num_output`, $G$ = `group`, kernel
$k_a$, padding $p_a$, stride $s_a$ and dilation $r_a$ on spatial axis $a$:

$$ O_a = \left\lfloor \frac{S_a + 2 p_a - (r_a (k_a - 1) + 1)}{s_a} \right\rfloor + 1 $$

weight $W$: $(K, C/G, k_1, \dots, k_d)$, bias $b$: $(K)$, top: $(N, K, O_1, \dots, O_d)$.

Forward. Output channel $o$ belongs to group $g = \lfloor o G / K \rfloor$ and sees only the
$C/G$ input channels of that group:

$$ y_{n,o,\mathbf{q}} = b_o + \sum_{c=0}^{C/G-1} \sum_{\mathbf{i}} W_{o,c,\mathbf{i}}\;
   x^{\mathrm{pad}}_{n,\ gC/G + c,\ \mathbf{q}\odot\mathbf{s} + \mathbf{i}\odot\mathbf{r}} $$

With $\mathrm{col} = \mathrm{im2col}(x)$ (`minicaffe/im2col.py`), a matrix with one row per
$(c, \mathbf{i})$ and one column per output position, this is a matrix product per group,

$$ Y_g = W_g \, \mathrm{col}_g + b_g \mathbf{1}^\top, \qquad
   W_g: (K/G) \times (C/G \prod k), \quad \mathrm{col}_g: (C/G \prod k) \times \prod O .$$

Backward, from $\partial E/\partial Y$:

$$ \frac{\partial E}{\partial W_g} \mathrel{+}= \frac{\partial E}{\partial Y_g}\,\mathrm{col}_g^\top,
   \qquad \frac{\partial E}{\partial b_o} \mathrel{+}= \sum_{n,\mathbf{q}} \frac{\partial E}{\partial y_{n,o,\mathbf{q}}},
   \qquad \frac{\partial E}{\partial x} = \mathrm{col2im}\Big(W_g^\top \frac{\partial E}{\partial Y_g}\Big) $$

summed over the images of the batch (and over all bottoms, which share the weights).

The products, on both engines, are the helpers of `minicaffe/layers/base_conv.py`,
which Deconvolution shares: forward is `forward_*_gemm` and `forward_*_bias`, backward
`backward_*_bias`, `weight_*_gemm` (reusing the columns forward built; Caffe rebuilds
them, trading time for memory) and `backward_*_gemm`. How the batch is laid out for
them (two column layouts on the host, whole chunks of the batch per GEMM on the
device) is explained there.

Multiple bottoms give as many tops, all convolved with the same weights.

Device twin: `opencl/convolution.cl` (moving results between the GEMM's layout and the
blobs', and the bias), with the GEMMs of `opencl/gemm.cl` and the columns of
`opencl/im2col.cl` (`im2col_nd` for other than 2 spatial axes or `force_nd_im2col`).

    layer {
      name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
      param { lr_mult: 1 } param { lr_mult: 2 }
      convolution_param {
        num_output: 20 kernel_size: 5 stride: 1
        weight_filler { type: "xavier" } bias_filler { type: "constant" }
      }
    }
"""
from __future__ import annotations

from minicaffe.im2col import conv_out_shape
from minicaffe.layer import register_layer
from minicaffe.layers.base_conv import BaseConvolutionLayer


@register_layer
class ConvolutionLayer(BaseConvolutionLayer):
    """Convolution over the spatial axes after `axis`; see the module docstring."""

    type = "Convolution"

    def reverse_dimensions(self) -> bool:
        return False  # im2col reads the bottom, the GEMM writes the top

    def compute_output_shape(self, spatial):
        return conv_out_shape(spatial, self.kernel, self.pad, self.stride, self.dilation)

    def forward_cpu(self, bottom, top):
        weight = self.blobs[0].cpu_data()
        for i, (b, t) in enumerate(zip(bottom, top)):
            y = t.mutable_cpu_data()
            self.forward_cpu_gemm(b.cpu_data(), weight, y, col=i)
            if self.bias_term:
                self.forward_cpu_bias(y, self.blobs[1].cpu_data())

    def backward_cpu(self, top, propagate_down, bottom):
        weight = self.blobs[0].cpu_data()
        for i, (b, t) in enumerate(zip(bottom, top)):
            dy = t.cpu_diff()
            if self.bias_term and self.param_propagate(1):
                self.backward_cpu_bias(self.blobs[1].mutable_cpu_diff(), dy)
            if self.param_propagate(0):
                self.weight_cpu_gemm(b.cpu_data(), dy, self.blobs[0].mutable_cpu_diff(),
                                     col=i, skip_im2col=True)
            if propagate_down[i]:
                self.backward_cpu_gemm(dy, weight, b.mutable_cpu_diff())

    def forward_gpu(self, bottom, top):
        weight = self.blobs[0].gpu_data()
        for i, (b, t) in enumerate(zip(bottom, top)):
            y = t.mutable_gpu_data()
            self.forward_gpu_gemm(b.gpu_data(), weight, y, col=i)
            if self.bias_term:
                self.forward_gpu_bias(y, self.blobs[1].gpu_data())

    def backward_gpu(self, top, propagate_down, bottom):
        weight = self.blobs[0].gpu_data()
        for i, (b, t) in enumerate(zip(bottom, top)):
            dy = t.gpu_diff()
            if self.bias_term and self.param_propagate(1):
                self.backward_gpu_bias(self.blobs[1].mutable_gpu_diff(), dy)
            if self.param_propagate(0):
                self.weight_gpu_gemm(b.gpu_data(), dy, self.blobs[0].mutable_gpu_diff(),
                                     col=i, skip_im2col=True)
            if propagate_down[i]:
                self.backward_gpu_gemm(dy, weight, b.mutable_gpu_diff())
