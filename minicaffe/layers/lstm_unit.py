r"""LSTMUnit: one time step of an LSTM cell, from gate pre-activations to (c_t, h_t).

Caffe: `lstm_unit_layer.cpp` / `.cu` (declared in `lstm_layer.hpp`). Device twin:
`opencl/lstm_unit.cl`.

The LSTM layer's unrolled net runs one LSTMUnit per time step; the matrix products that
make the gate pre-activations (W x_t + W_h h_{t-1} + b) are InnerProduct layers outside
it, so this layer has no learnable blobs.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.common import MinicaffeError
from minicaffe.layer import Layer, register_layer


def _sigmoid(x):
    # exp(-x) overflows to inf for x < -88 in float32; 1 / inf = 0 is then the right answer.
    with np.errstate(over="ignore"):
        return np.float32(1) / (np.float32(1) + np.exp(-x))


@register_layer
class LSTMUnitLayer(Layer):
    r"""The cell update of an LSTM for one time step, for N independent streams.

    The gate input $x_t$ of each stream holds four blocks of D values, in this order:
    $[i', f', o', g']$ (input, forget, output gate, candidate):

    $$ i = \sigma(i') \quad f = \sigma(f') \quad o = \sigma(o') \quad g = \tanh(g') $$
    $$ c_t = \delta_t\, f \odot c_{t-1} + i \odot g \qquad h_t = o \odot \tanh(c_t) $$

    $\delta_t$ is the stream's sequence-continuation indicator (`cont`): 0 at the first
    step of a new sequence, which cuts the cell off from the previous sequence's state;
    1 inside a sequence. Backward, with $\bar c = \partial E/\partial c_t +
    \partial E/\partial h_t\, o\,(1 - \tanh^2 c_t)$:

    $$ \frac{\partial E}{\partial c_{t-1}} = \delta_t f \bar c \quad
       \frac{\partial E}{\partial i'} = \bar c\, g\, i(1-i) \quad
       \frac{\partial E}{\partial f'} = \delta_t \bar c\, c_{t-1} f(1-f) $$
    $$ \frac{\partial E}{\partial o'} = \frac{\partial E}{\partial h_t} \tanh(c_t)\, o(1-o)
       \quad \frac{\partial E}{\partial g'} = \bar c\, i\,(1-g^2) $$

    * There is no gradient for `cont`: asking for one is an error, as in Caffe, and a Net
      never asks, not even with `force_backward` (`allow_force_backward(2)` is False).
    * For the 0/1 indicators of real use both of Caffe's engines and ours agree. For a
      fractional $\delta_t$ Caffe's CPU code takes $f(1-f)$ of the already scaled
      $\delta_t f$, which is not the derivative; its CUDA code and both of ours use the
      true one above (the gradient check tests $\delta_t = 0.5$).
    * Caffe's CUDA code keeps the four activations in a buffer between forward and
      backward; ours recompute them from $x_t$ (four exps per element, no buffer).
    * Not in place: the tops are new blobs.

    Bottoms: $c_{t-1}$ (1, N, D); $x_t$ (1, N, 4D); cont $\delta_t$ (1, N).
    Tops: $c_t$ (1, N, D); $h_t$ (1, N, D).

        layer { name: "unit1" type: "LSTMUnit" bottom: "c_0" bottom: "gate_input_1"
                bottom: "cont_1" top: "c_1" top: "h_1" }
    """

    type = "LSTMUnit"
    exact_num_bottom_blobs = 3
    exact_num_top_blobs = 2

    def _fail(self, message):
        raise MinicaffeError(f"{self.type} layer {self.name!r}: {message}")

    def allow_force_backward(self, bottom_index: int) -> bool:
        return bottom_index != 2  # the sequence indicators take no gradient

    def reshape(self, bottom, top):
        roles = ("c_prev (1, N, D)", "gate input x (1, N, 4D)", "cont (1, N)")
        num = bottom[0].shape[1] if bottom[0].num_axes > 1 else None
        for k, (blob, role) in enumerate(zip(bottom, roles)):
            axes = 2 if k == 2 else 3
            if blob.num_axes != axes or blob.shape[0] != 1 or blob.shape[1] != num:
                self._fail(f"bottom {k} ({blob.name!r}) is {role} but has shape {blob.shape}"
                           + (f"; N = {num} from bottom 0" if num is not None and k else ""))
        self.hidden_dim = bottom[0].shape[2]
        if bottom[1].shape[2] != 4 * self.hidden_dim:
            self._fail(f"bottom 1 ({bottom[1].name!r}) must hold 4 * D = {4 * self.hidden_dim} "
                       f"gate inputs per stream (D = {self.hidden_dim} from bottom 0), "
                       f"got {bottom[1].shape[2]}")
        top[0].reshape_like(bottom[0])
        top[1].reshape_like(bottom[0])

    def _gates(self, bottom):
        """i, f, o, g as (N, D) arrays, and cont as an (N, 1) column."""
        n, d = bottom[0].shape[1], self.hidden_dim
        x = bottom[1].cpu_data().reshape(n, 4, d)
        i, f, o = (_sigmoid(x[:, k]) for k in range(3))
        g = np.tanh(x[:, 3])
        return i, f, o, g, bottom[2].cpu_data().reshape(n, 1)

    def forward_cpu(self, bottom, top):
        n, d = bottom[0].shape[1], self.hidden_dim
        i, f, o, g, cont = self._gates(bottom)
        c = cont * f * bottom[0].cpu_data().reshape(n, d) + i * g
        top[0].mutable_cpu_data()[...] = c.reshape(top[0].shape)
        top[1].mutable_cpu_data()[...] = (o * np.tanh(c)).reshape(top[1].shape)

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[2]:
            self._fail(f"cannot backpropagate to the sequence continuation indicators "
                       f"(bottom 2, {bottom[2].name!r})")
        if not (propagate_down[0] or propagate_down[1]):
            return
        n, d = bottom[0].shape[1], self.hidden_dim
        i, f, o, g, cont = self._gates(bottom)
        c_prev = bottom[0].cpu_data().reshape(n, d)
        tanh_c = np.tanh(top[0].cpu_data().reshape(n, d))
        dc, dh = top[0].cpu_diff().reshape(n, d), top[1].cpu_diff().reshape(n, d)
        # The gradient reaching c_t: directly, and through h_t = o tanh(c_t).
        dc_total = dc + dh * o * (1 - tanh_c * tanh_c)
        if propagate_down[0]:
            bottom[0].mutable_cpu_diff()[...] = (cont * f * dc_total).reshape(bottom[0].shape)
        if propagate_down[1]:
            dx = bottom[1].mutable_cpu_diff().reshape(n, 4, d)
            dx[:, 0] = dc_total * g * i * (1 - i)
            dx[:, 1] = cont * dc_total * c_prev * f * (1 - f)
            dx[:, 2] = dh * tanh_c * o * (1 - o)
            dx[:, 3] = dc_total * i * (1 - g * g)

    def forward_gpu(self, bottom, top):
        count = top[0].count
        opencl.kernel("lstm_unit.cl", "lstm_unit_forward")(
            count, np.int32(self.hidden_dim), bottom[0].gpu_data(), bottom[1].gpu_data(),
            bottom[2].gpu_data(), top[0].mutable_gpu_data(), top[1].mutable_gpu_data())

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[2]:
            self._fail(f"cannot backpropagate to the sequence continuation indicators "
                       f"(bottom 2, {bottom[2].name!r})")
        if not (propagate_down[0] or propagate_down[1]):
            return
        # Caffe's kernels write both bottom diffs whatever propagate_down says; ours, like
        # the numpy body, leave alone the diff of a bottom that was not asked for.
        count = top[0].count
        opencl.kernel("lstm_unit.cl", "lstm_unit_backward")(
            count, np.int32(self.hidden_dim), np.int32(propagate_down[0]),
            np.int32(propagate_down[1]), bottom[0].gpu_data(), bottom[1].gpu_data(),
            bottom[2].gpu_data(), top[0].gpu_data(), top[0].gpu_diff(), top[1].gpu_diff(),
            bottom[0].mutable_gpu_diff(), bottom[1].mutable_gpu_diff())
