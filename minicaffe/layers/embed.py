r"""Embed: look up a learned vector for each integer index (a one-hot InnerProduct).

Caffe: `embed_layer.cpp` / `.cu`. Device twin: `opencl/embed.cl`.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.filler import fill
from minicaffe.layer import Layer, register_layer


@register_layer
class EmbedLayer(Layer):
    r"""Replace each index $k$ of the bottom by row $k$ of the weight $W$ (plus a bias).

    With $K$ = `input_dim` (the number of distinct indices), $N$ = `num_output`, weight
    $W$ of shape $(K, N)$ (the transpose of InnerProduct's, so a row is contiguous) and
    bias $b$ of shape $(N)$, every one of the $M$ bottom values $k_m$ gives $N$ outputs:
    $$ y[m, :] = W[k_m, :] + b $$
    which is InnerProduct applied to the one-hot vector of $k_m$. The gradients *add*
    into the parameter diffs; an index used several times collects the sum of its rows:
    $$ \frac{\partial E}{\partial W[k, :]} \mathrel{+}= \sum_{m:\ k_m = k}
       \frac{\partial E}{\partial y[m, :]}, \qquad
       \frac{\partial E}{\partial b} \mathrel{+}= \sum_m \frac{\partial E}{\partial y[m, :]} $$
    The indices themselves get no gradient: asking for one is an error, as in Caffe.

    Indices must be whole numbers in $[0, K)$. Caffe only checks that in debug builds;
    here a bad index is always a clear error (checked on the host, where indices from a
    Data layer already are), never an out-of-bounds read.

    On the device each weight value $W[k, d]$ is one work-item that walks the $M$ indices
    and adds up the top diffs of the positions that used row $k$: a gather, so no two
    work-items write the same value and no atomics are needed (Caffe uses atomic adds).

    Bottom: indices, any shape S.   Top: y, of shape (S..., N).

        layer { name: "embed" type: "Embed" bottom: "words" top: "vectors"
                embed_param { input_dim: 10000 num_output: 256
                              weight_filler { type: "uniform" min: -0.1 max: 0.1 } } }
    """

    type = "Embed"
    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def _fail(self, message):
        raise MinicaffeError(f"{self.type} layer {self.name!r}: {message}")

    def layer_setup(self, bottom, top):
        p = self.layer_param.embed_param
        self.num_output, self.input_dim, self.bias_term = p.num_output, p.input_dim, p.bias_term
        if self.num_output <= 0:
            self._fail("embed_param.num_output must be specified and positive")
        if self.input_dim <= 0:
            self._fail("embed_param.input_dim must be specified and positive")
        weight_shape = (self.input_dim, self.num_output)
        if self.blobs:
            if len(self.blobs) != 1 + self.bias_term:
                self._fail(f"expected {1 + self.bias_term} parameter blob(s), got {len(self.blobs)}")
            if self.blobs[0].shape != weight_shape:
                self._fail(f"weight shape {self.blobs[0].shape} given, expected {weight_shape} "
                           f"(input_dim, num_output)")
            if self.bias_term and self.blobs[1].count != self.num_output:
                self._fail(f"bias shape {self.blobs[1].shape} given, expected {(self.num_output,)}")
        else:
            self.blobs.append(Blob(weight_shape, name=f"{self.name}.weight"))
            fill(self.blobs[0], p.weight_filler)
            if self.bias_term:
                self.blobs.append(Blob((self.num_output,), name=f"{self.name}.bias"))
                fill(self.blobs[1], p.bias_filler)
        self.param_propagate_down = [True] * len(self.blobs)

    def reshape(self, bottom, top):
        self.M = bottom[0].count
        top[0].reshape(bottom[0].shape + (self.num_output,))

    def _indices(self, bottom) -> np.ndarray:
        """The bottom values as ints, each checked to be a whole number in [0, input_dim)."""
        values = bottom[0].cpu_data().reshape(-1)
        bad = ~((values >= 0) & (values < self.input_dim) & (values == np.floor(values)))
        if bad.any():
            m = int(np.argmax(bad))
            self._fail(f"index {values[m]} at position {m} of {bottom[0].name!r} is not a whole "
                       f"number in [0, {self.input_dim}) (input_dim)")
        return values.astype(np.int64)

    def forward_cpu(self, bottom, top):
        y = top[0].mutable_cpu_data().reshape(self.M, self.num_output)
        y[...] = self.blobs[0].cpu_data()[self._indices(bottom)]
        if self.bias_term:
            y += self.blobs[1].cpu_data().reshape(-1)

    def backward_cpu(self, top, propagate_down, bottom):
        self._no_index_gradient(propagate_down, bottom)
        dy = top[0].cpu_diff().reshape(self.M, self.num_output)
        if self.param_propagate(0):
            # np.add.at, not `dw[k] += dy`: an index used twice must add twice.
            np.add.at(self.blobs[0].mutable_cpu_diff(), self._indices(bottom), dy)
        if self.bias_term and self.param_propagate(1):
            self.blobs[1].mutable_cpu_diff().reshape(-1)[...] += dy.sum(axis=0)

    def _no_index_gradient(self, propagate_down, bottom):
        if propagate_down[0]:
            self._fail(f"cannot backpropagate to the indices (bottom {bottom[0].name!r})")

    def forward_gpu(self, bottom, top):
        self._indices(bottom)  # checked on the host
        has_bias = self.bias_term
        opencl.kernel("embed.cl", "embed_forward")(
            top[0].count, bottom[0].gpu_data(), self.blobs[0].gpu_data(),
            self.blobs[1].gpu_data() if has_bias else self.blobs[0].gpu_data(),
            np.int32(has_bias), np.int32(self.num_output), top[0].mutable_gpu_data())

    def backward_gpu(self, top, propagate_down, bottom):
        self._no_index_gradient(propagate_down, bottom)
        dy = top[0].gpu_diff()
        if self.param_propagate(0):
            opencl.kernel("embed.cl", "embed_weight_backward")(
                self.blobs[0].count, bottom[0].gpu_data(), dy, np.int32(self.M),
                np.int32(self.num_output), self.blobs[0].mutable_gpu_diff())
        if self.bias_term and self.param_propagate(1):
            opencl.kernel("embed.cl", "embed_bias_backward")(
                self.num_output, dy, np.int32(self.M), self.blobs[1].mutable_gpu_diff())
