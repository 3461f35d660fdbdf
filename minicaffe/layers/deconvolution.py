r"""Deconvolution: the transpose of Convolution, learned upsampling (Caffe's `deconv_layer.cpp`).

Shapes. The bottom has shape $(N, C, S_1, \dots, S_d)$ (with `axis` = 1; a larger `axis`
folds the leading axes into $N$). With $K$ = `num_output`, $G$ = `group`, kernel $k_a$,
padding $p_a$, stride $s_a$ and dilation $r_a$ on spatial axis $a$, the top is
$(N, K, O_1, \dots, O_d)$ with

$$ O_a = s_a (S_a - 1) + r_a (k_a - 1) + 1 - 2 p_a , $$

the size a Convolution of the same geometry would shrink back to $S_a$. The weight
$W$ has shape $(C, K/G, k_1, \dots, k_d)$: indexed by the *bottom*'s channels first, so
that it is exactly the weight of the Convolution from a $K$-channel input to a
$C$-channel output that this layer transposes. Bias $b$: $(K)$.

Forward. Every bottom pixel scatters its value, weighted by the kernel, into the top
window it would have been computed from by that Convolution; overlapping windows add:

$$ y_{n,k,\mathbf{o}} = b_k + \sum_{c \in \text{group of } k} \sum_{\mathbf{q}, \mathbf{i}:\
   \mathbf{q}\odot\mathbf{s} + \mathbf{i}\odot\mathbf{r} - \mathbf{p} = \mathbf{o}}
   W_{c,\ k - gK/G,\ \mathbf{i}}\; x_{n,c,\mathbf{q}} $$

In matrices, per group $g$ with $X_g$ the bottom's $C/G$ channels as rows,

$$ Y_g = \mathrm{col2im}\big(W_g^\top X_g\big) + b_g \mathbf{1}^\top, \qquad
   W_g: (C/G) \times (K/G \prod k) $$

which is a Convolution's backward to its input. So the three products of Convolution
are reused with the roles swapped (im2col reads the top, the GEMM writes the bottom
side; `reverse_dimensions()` says so to the shared helpers):

$$ \frac{\partial E}{\partial X_g} = W_g\ \mathrm{im2col}\Big(\frac{\partial E}{\partial Y}\Big)_g,
   \qquad \frac{\partial E}{\partial W_g} \mathrel{+}= X_g\ \mathrm{im2col}\Big(\frac{\partial E}{\partial Y}\Big)_g^\top,
   \qquad \frac{\partial E}{\partial b_k} \mathrel{+}= \sum_{n,\mathbf{o}} \frac{\partial E}{\partial y_{n,k,\mathbf{o}}} $$

summed over the images of the batch and over all bottoms (they share the weights):
backward to the bottom is a Convolution's forward of the top diff, and the weight
gradient builds the columns of the top diff once for both (as Caffe does).

Multiple bottoms give as many tops, all with the same weights. Not in place.

Device twin: the helpers of `minicaffe/layers/base_conv.py`, shared with Convolution,
whose kernels are `opencl/convolution.cl` (layout moves and the bias), `opencl/gemm.cl`
and `opencl/im2col.cl` (`col2im_nd`/`im2col_nd` for other than 2 spatial axes or
`force_nd_im2col`). Deconvolution has no arithmetic of its own to put in a kernel.

    layer {
      name: "upscore" type: "Deconvolution" bottom: "score" top: "upscore"
      param { lr_mult: 0 }
      convolution_param {
        num_output: 21 kernel_size: 4 stride: 2 bias_term: false
        weight_filler { type: "bilinear" }
      }
    }
"""
from __future__ import annotations

from minicaffe.common import MinicaffeError
from minicaffe.layer import register_layer
from minicaffe.layers.base_conv import BaseConvolutionLayer


@register_layer
class DeconvolutionLayer(BaseConvolutionLayer):
    """Convolution transposed over the spatial axes after `axis`; see the module docstring."""

    type = "Deconvolution"

    def reverse_dimensions(self) -> bool:
        return True  # im2col reads the top, the GEMM writes the bottom side

    def compute_output_shape(self, spatial):
        out = []
        for axis, (size, k, p, s, r) in enumerate(zip(spatial, self.kernel, self.pad,
                                                       self.stride, self.dilation)):
            extent = r * (k - 1) + 1
            o = s * (size - 1) + extent - 2 * p
            if o <= 0:  # Caffe does not check; such a top could hold no value
                raise MinicaffeError(
                    f"spatial axis {axis}: the output would be {s}*({size}-1) + {extent} - 2*{p} "
                    f"= {o} values long (stride*(input-1) + kernel extent - 2*pad); "
                    f"the padding is too large")
            out.append(o)
        return tuple(out)

    def forward_cpu(self, bottom, top):
        weight = self.blobs[0].cpu_data()
        for b, t in zip(bottom, top):
            y = t.mutable_cpu_data()
            self.backward_cpu_gemm(b.cpu_data(), weight, y)  # y = col2im(Wᵀ x)
            if self.bias_term:
                self.forward_cpu_bias(y, self.blobs[1].cpu_data())

    def backward_cpu(self, top, propagate_down, bottom):
        weight = self.blobs[0].cpu_data()
        for i, (b, t) in enumerate(zip(bottom, top)):
            dy = t.cpu_diff()
            if self.bias_term and self.param_propagate(1):
                self.backward_cpu_bias(self.blobs[1].mutable_cpu_diff(), dy)
            if self.param_propagate(0):  # dW += x im2col(dy)ᵀ, keeping im2col(dy)
                self.weight_cpu_gemm(dy, b.cpu_data(), self.blobs[0].mutable_cpu_diff(), col=i)
            if propagate_down[i]:  # dx = W im2col(dy), reusing the columns just built
                self.forward_cpu_gemm(dy, weight, b.mutable_cpu_diff(), col=i,
                                      skip_im2col=self.param_propagate(0))

    def forward_gpu(self, bottom, top):
        weight = self.blobs[0].gpu_data()
        for b, t in zip(bottom, top):
            y = t.mutable_gpu_data()
            self.backward_gpu_gemm(b.gpu_data(), weight, y)
            if self.bias_term:
                self.forward_gpu_bias(y, self.blobs[1].gpu_data())

    def backward_gpu(self, top, propagate_down, bottom):
        weight = self.blobs[0].gpu_data()
        for i, (b, t) in enumerate(zip(bottom, top)):
            dy = t.gpu_diff()
            if self.bias_term and self.param_propagate(1):
                self.backward_gpu_bias(self.blobs[1].mutable_gpu_diff(), dy)
            if self.param_propagate(0):
                self.weight_gpu_gemm(dy, b.gpu_data(), self.blobs[0].mutable_gpu_diff(), col=i)
            if propagate_down[i]:
                self.forward_gpu_gemm(dy, weight, b.mutable_gpu_diff(), col=i,
                                      skip_im2col=self.param_propagate(0))
