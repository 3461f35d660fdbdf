r"""RecurrentLayer: the base of RNN and LSTM, a layer that holds a small Net unrolled in time.

Caffe's `recurrent_layer.cpp`. It registers no type: `rnn.py` and `lstm.py` subclass it
and say only what one time step computes (`fill_unrolled_net`), which recurrent state they
carry and what their output is called. Everything else is here, as in Caffe:

* **The unrolled net.** At setup the layer writes a NetParameter: an Input layer with the
  tops `x` (T, N, ...), `cont` (T, N) and, when given, `x_static` (N, ...); then the
  subclass's layers for t = 1..T; then one Reduction "pseudo-loss" per output, with loss
  weight 1, so that the inner Net decides that everything above the inputs needs backward
  (setting `force_backward` would also push gradients into `cont`). The pseudo-losses are
  never run: forward and backward stop at the layer just below them. Every inner layer's
  name gets this layer's name and "_" in front (`lstm1_unit_3`).
* **Shared weights.** Each step's InnerProduct names its parameters (`param { name:
  "W_hh" }`), so the inner Net keeps one blob per name and the T steps use its memory:
  their gradients add up in one diff. This layer's `blobs` are the inner Net's owned
  parameters, in the order it made them, so the outer solver updates and snapshots them.
* **The data is shared, not copied.** `x` (data and diff), `cont` and `x_static` use the
  bottoms' memory; the output top uses the inner output blob's data and diff.
* **State across batches.** Without `expose_hidden`, forward first copies the last
  step's state (h_T, and c_T for an LSTM) into h_0 (and c_0): a long sequence can be fed
  in chunks of T steps, and `cont` = 0 at a sequence's first step flushes that state. No
  gradient crosses a batch boundary. With `expose_hidden: true` the initial states are
  extra bottoms (after `x_static`, if any) and the final states extra tops, and nothing is
  carried; as in Caffe, the initial-state bottoms receive no gradient.
* **`cont`** takes no gradient: asking for one is an error.

Bottoms: x of shape (T, N, ...); cont of shape (T, N); optionally x_static of shape
(N, ...); with expose_hidden, the initial states, each (1, N, num_output).
Tops: the output, (T, N, num_output); with expose_hidden, the final states.

The inner layers run on the engine in use (numpy or OpenCL), each with its own kernels:
this layer itself computes nothing, so it has no device twin (see tests/test_layout.py).
Where minicaffe differs from Caffe: its Net wants unique layer names, so the unrolled
net's unnamed layers are named `input`, `recurrent_input` (and, in an LSTM, `c_T_copy`);
and weights shared with another net (a test net sharing the train net's) are re-shared
before every forward, not only in the TEST phase.
"""
from __future__ import annotations

from minicaffe import common, opencl
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import Layer
from minicaffe.net import Net
from minicaffe.proto import caffe_pb2


class RecurrentLayer(Layer):
    """A layer computed by an inner Net unrolled over the T steps of its input."""

    # ---- what a subclass says (Caffe's pure virtuals)
    def recurrent_input_names(self) -> list[str]:
        """Inner blobs holding the state before step 1 (h_0, ...)."""
        raise NotImplementedError

    def recurrent_output_names(self) -> list[str]:
        """Inner blobs holding the state after step T, paired with the inputs."""
        raise NotImplementedError

    def recurrent_input_shapes(self) -> list[tuple[int, ...]]:
        raise NotImplementedError

    def output_names(self) -> list[str]:
        """Inner blobs that become this layer's tops (before the exposed states)."""
        raise NotImplementedError

    def fill_unrolled_net(self, net_param) -> None:
        """Append the layers of the T steps to `net_param` (Caffe's FillUnrolledNet)."""
        raise NotImplementedError

    # ---- pieces of the unrolled net that RNN and LSTM build alike
    def add_inner_product(self, net_param, name, bottom, top, params, bias, num_output, axis=2):
        """An InnerProduct with recurrent_param's fillers, its weights named `params` so that
        every step shares them."""
        p = self.layer_param.recurrent_param
        ip = caffe_pb2.InnerProductParameter(num_output=num_output, bias_term=bias, axis=axis,
                                             weight_filler=p.weight_filler)
        if bias:
            ip.bias_filler.CopyFrom(p.bias_filler)
        layer = net_param.layer.add(name=name, type="InnerProduct", bottom=[bottom], top=[top],
                                    inner_product_param=ip)
        for param_name in params:
            layer.param.add(name=param_name)
        return layer

    def add_input_transforms(self, net_param, weight: str, bias: str, width: int):
        """cont sliced per step; `weight` x + `bias` for every step at once, sliced per step
        (tops `{weight}_x_{t}`); and with a static input, `{weight}_static` x_static shaped
        (1, N, width) as `{weight}_x_static`. Returns the two Slice layers, whose tops the
        caller adds step by step."""
        cont_slice = net_param.layer.add(name="cont_slice", type="Slice", bottom=["cont"])
        cont_slice.slice_param.axis = 0
        # x needs its gradient although the Input layer it comes from learns nothing, hence
        # propagate_down.
        self.add_inner_product(net_param, "x_transform", "x", f"{weight}_x", [weight, bias],
                               True, width).propagate_down.append(True)
        if self.static_input:
            self.add_inner_product(net_param, f"{weight}_x_static", "x_static",
                                   f"{weight}_x_static_preshape", [f"{weight}_static"], False,
                                   width, axis=1).propagate_down.append(True)
            net_param.layer.add(name=f"{weight}_x_static_reshape", type="Reshape",
                                bottom=[f"{weight}_x_static_preshape"], top=[f"{weight}_x_static"],
                                reshape_param=caffe_pb2.ReshapeParameter(
                                    shape=caffe_pb2.BlobShape(dim=[1, -1, width])))
        x_slice = net_param.layer.add(name=f"{weight}_x_slice", type="Slice", bottom=[f"{weight}_x"])
        x_slice.slice_param.axis = 0
        return cont_slice, x_slice

    # ---- blob counts depend on expose_hidden
    def __init__(self, layer_param):
        super().__init__(layer_param)
        self.expose_hidden = layer_param.recurrent_param.expose_hidden
        num_recurrent = len(self.recurrent_input_names()) if self.expose_hidden else 0
        self.min_bottom_blobs = 2 + num_recurrent
        self.max_bottom_blobs = 3 + num_recurrent  # plus x_static
        self.exact_num_top_blobs = 1 + num_recurrent

    def allow_force_backward(self, bottom_index: int) -> bool:
        return bottom_index != 1  # cont

    def _error(self, message: str) -> MinicaffeError:
        return MinicaffeError(f"{self.type} layer {self.name!r}: {message}")

    def _check_inputs(self, bottom) -> None:
        x, cont = bottom[0], bottom[1]
        if x.num_axes < 2:
            raise self._error(f"bottom 0 {x.name!r} of shape {x.shape} needs at least 2 axes "
                              "(time steps T, streams N, ...)")
        if cont.num_axes != 2 or cont.shape != x.shape[:2]:
            raise self._error(f"bottom 1 (cont) {cont.name!r} has shape {cont.shape}; it must "
                              f"be (T, N) = {x.shape[:2]}, one 0/1 flag per step and stream")

    def layer_setup(self, bottom, top):
        self._check_inputs(bottom)
        p = self.layer_param.recurrent_param
        if p.num_output <= 0:
            raise self._error("recurrent_param.num_output must be positive")
        self.T, self.N = bottom[0].shape[0], bottom[0].shape[1]
        num_exposed = len(self.recurrent_input_names()) if self.expose_hidden else 0
        self.static_input = len(bottom) > 2 + num_exposed
        if self.static_input and (bottom[2].num_axes < 1 or bottom[2].shape[0] != self.N):
            raise self._error(f"bottom 2 (x_static) {bottom[2].name!r} has shape "
                              f"{bottom[2].shape}; its first axis must be N = {self.N}")

        net_param = caffe_pb2.NetParameter()
        net_param.state.phase = self.phase
        fed = bottom[:3] if self.static_input else bottom[:2]
        net_param.layer.add(name="input", type="Input", top=["x", "cont", "x_static"][:len(fed)],
                            input_param=caffe_pb2.InputParameter(
                                shape=[caffe_pb2.BlobShape(dim=b.shape) for b in fed]))
        self.fill_unrolled_net(net_param)
        if self.name:
            for layer in net_param.layer:
                layer.name = f"{self.name}_{layer.name}"
        outputs = self.output_names()
        for name in outputs:
            loss = net_param.layer.add(name=f"{name}_pseudoloss", type="Reduction")
            loss.bottom.append(name)
            loss.top.append(f"{name}_pseudoloss")
            loss.loss_weight.append(1)
        # Errors in it (an unknown layer type, say) name this layer.
        self.unrolled_net = Net(net_param, source=f"the unrolled net of {self.type} layer {self.name!r}")
        self.unrolled_net.debug_info = p.debug_info
        blobs = self.unrolled_net.blobs
        self.x_input = blobs["x"]
        self.cont_input = blobs["cont"]
        self.x_static_input = blobs["x_static"] if self.static_input else None
        self.recurrent_inputs = [blobs[n] for n in self.recurrent_input_names()]
        self.recurrent_outputs = [blobs[n] for n in self.recurrent_output_names()]
        self.output_blobs = [blobs[n] for n in outputs]
        # Run everything but the pseudo-losses at the end.
        self.last_layer_index = len(self.unrolled_net.layers) - 1 - len(outputs)

        # This layer's parameters: one blob per shared name, the ones the inner Net owns.
        given = self.blobs  # weights from the prototxt or a caffemodel, if any
        self.blobs = list(self.unrolled_net.learnable_params)
        if given:
            if len(given) != len(self.blobs):
                raise self._error(f"{len(given)} parameter blobs given, the unrolled net has "
                                  f"{len(self.blobs)}")
            for j, (src, dst) in enumerate(zip(given, self.blobs)):
                if src.count != dst.count:
                    raise self._error(f"parameter blob {j} given with shape {src.shape}, "
                                      f"expected {dst.shape}")
                dst.mutable_cpu_data()[...] = src.cpu_data().reshape(dst.shape)
        self.param_propagate_down = [True] * len(self.blobs)
        # Each shared blob and the blob that owns its name, to re-share after another net
        # (a test net sharing a train net's weights) has pointed the owners elsewhere.
        owners: dict[str, Blob] = {}
        self._sharers: list[tuple[Blob, Blob]] = []
        for record in self.unrolled_net.layer_records:
            for name, blob in zip(record.param_names, record.layer.blobs):
                if name in owners:
                    self._sharers.append((blob, owners[name]))
                else:
                    owners[name] = blob
        # No gradient flows back across batches into the carried state.
        for blob in self.recurrent_outputs:
            blob.mutable_cpu_diff()[...] = 0

    def reshape(self, bottom, top):
        self._check_inputs(bottom)
        if bottom[0].shape[0] != self.T:
            raise self._error(f"the number of time steps changed from {self.T} to "
                              f"{bottom[0].shape[0]} (bottom {bottom[0].name!r}); T is fixed at setup")
        self.N = bottom[0].shape[1]
        self.x_input.reshape_like(bottom[0])
        self.cont_input.reshape_like(bottom[1])
        if self.static_input:
            self.x_static_input.reshape_like(bottom[2])
        for blob, shape in zip(self.recurrent_inputs, self.recurrent_input_shapes()):
            blob.reshape(shape)
        self.unrolled_net.reshape()
        self.x_input.share_data(bottom[0])
        self.x_input.share_diff(bottom[0])
        self.cont_input.share_data(bottom[1])
        if self.static_input:
            self.x_static_input.share_data(bottom[2])
            self.x_static_input.share_diff(bottom[2])
        if self.expose_hidden:
            offset = 2 + self.static_input
            for j, blob in enumerate(self.recurrent_inputs):
                given = bottom[offset + j]
                if given.shape != blob.shape:
                    raise self._error(f"initial state bottom {offset + j} {given.name!r} has "
                                      f"shape {given.shape}, expected {blob.shape}")
                blob.share_data(given)
        for t, out in zip(top, self.output_blobs):
            t.reshape_like(out)
            t.share_data(out)
            t.share_diff(out)
        if self.expose_hidden:
            for t, out in zip(top[len(self.output_blobs):], self.recurrent_outputs):
                t.reshape_like(out)

    def forward_cpu(self, bottom, top):
        for blob, owner in self._sharers:
            if blob.data_mem is not owner.data_mem:
                blob.share_data(owner)
                blob.share_diff(owner)
        if not self.expose_hidden:
            # Carry the state: this batch starts where the last one ended.
            for start, end in zip(self.recurrent_inputs, self.recurrent_outputs):
                if common.mode() == common.GPU:  # where the state is, without a round trip
                    opencl.copy(end.count, end.gpu_data(), start.mutable_gpu_data())
                else:
                    start.mutable_cpu_data()[...] = end.cpu_data()
        self.unrolled_net.forward_from_to(0, self.last_layer_index)
        if self.expose_hidden:
            for t, out in zip(top[len(self.output_blobs):], self.recurrent_outputs):
                t.share_data(out)

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[1]:
            raise self._error(f"cannot backpropagate to the sequence indicators "
                              f"(bottom 1, cont {bottom[1].name!r})")
        # The inner Net backpropagates to x (and x_static) and the weights whatever
        # propagate_down says: this layer runs backward only when one of them needs it.
        self.unrolled_net.backward_from_to(self.last_layer_index, 0)

    # The inner layers pick their own engine; this layer computes nothing itself.
    forward_gpu, backward_gpu = forward_cpu, backward_cpu
