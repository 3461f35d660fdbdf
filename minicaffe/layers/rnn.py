r"""RNN: a plain (Elman) recurrent layer with tanh units, unrolled into an inner Net.

Caffe's `rnn_layer.cpp`; the machinery (the inner Net, `cont`, the static input,
`expose_hidden`, weights shared across steps) is in `minicaffe/layers/recurrent.py`.
No device twin of its own: the inner layers run their kernels.
"""
from minicaffe.layer import register_layer
from minicaffe.layers.recurrent import RecurrentLayer
from minicaffe.proto import caffe_pb2


@register_layer
class RNNLayer(RecurrentLayer):
    r"""At every step t = 1..T, for each of the N streams:

    $$ h_t = \tanh\left(W_{hh}\,(\mathrm{cont}_t\, h_{t-1}) + W_{xh}\, x_t + b_h
             \;[+\; W_{xh}^{static}\, x_{static}]\right) $$

    $$ o_t = \tanh(W_{ho}\, h_t + b_o) $$

    x_t is flattened from axis 2 on. `cont`_t = 0 marks the first step of a sequence and
    zeroes the state it inherits. The top is o = (o_1, ..., o_T), of shape (T, N,
    num_output). The parameters, in order: W_xh (num_output, x_dim), b_h, [W_xh_static],
    W_hh (num_output, num_output), W_ho (num_output, num_output), b_o; weights from
    `recurrent_param.weight_filler`, biases from `bias_filler`. The gradient is
    backpropagation through time over the T steps of the batch.

    The unrolled net for one step (names prefixed with the layer's name): Scale
    `h_conted_{t-1}` = cont_t h_{t-1}; InnerProduct `W_hh_h_{t-1}`; Eltwise SUM
    `h_input_sum_t`; TanH `h_neuron_t`; InnerProduct `W_ho_h_t`; TanH `o_neuron_t`; all
    steps' o_t are concatenated by `o_concat`.

    Bottoms: x (T, N, ...), cont (T, N), [x_static (N, ...)], [h_0 (1, N, num_output)
    with expose_hidden].   Tops: o (T, N, num_output), [h_T with expose_hidden].

        layer { name: "rnn1" type: "RNN" bottom: "x" bottom: "cont" top: "o"
                recurrent_param { num_output: 16
                  weight_filler { type: "uniform" min: -0.08 max: 0.08 } } }
    """

    type = "RNN"

    def recurrent_input_names(self):
        return ["h_0"]

    def recurrent_output_names(self):
        return [f"h_{self.T}"]

    def recurrent_input_shapes(self):
        return [(1, self.N, self.layer_param.recurrent_param.num_output)]

    def output_names(self):
        return ["o"]

    def fill_unrolled_net(self, net_param):
        p = self.layer_param.recurrent_param
        num_output = p.num_output

        def inner_product(name, bottom, top, params, bias):
            return self.add_inner_product(net_param, name, bottom, top, params, bias, num_output)

        net_param.layer.add(name="recurrent_input", type="Input", top=["h_0"],
                            input_param=caffe_pb2.InputParameter(
                                shape=[caffe_pb2.BlobShape(dim=self.recurrent_input_shapes()[0])]))
        # W_xh x_t + b_h for every step at once, and W_xh_static x_static, (1, N, num_output).
        cont_slice, x_slice = self.add_input_transforms(net_param, "W_xh", "b_h", num_output)
        for t in range(1, self.T + 1):
            cont_slice.top.append(f"cont_{t}")
            x_slice.top.append(f"W_xh_x_{t}")
            # h_conted_{t-1} = cont_t * h_{t-1}: 0 at a sequence's first step.
            scale = net_param.layer.add(name=f"h_conted_{t - 1}", type="Scale",
                                        bottom=[f"h_{t - 1}", f"cont_{t}"], top=[f"h_conted_{t - 1}"])
            scale.scale_param.axis = 0
            inner_product(f"W_hh_h_{t - 1}", f"h_conted_{t - 1}", f"W_hh_h_{t - 1}", ["W_hh"], False)
            total = net_param.layer.add(name=f"h_input_sum_{t}", type="Eltwise",
                                        bottom=[f"W_hh_h_{t - 1}", f"W_xh_x_{t}"],
                                        top=[f"h_neuron_input_{t}"],
                                        eltwise_param=caffe_pb2.EltwiseParameter(operation="SUM"))
            if self.static_input:
                total.bottom.append("W_xh_x_static")
            net_param.layer.add(name=f"h_neuron_{t}", type="TanH",
                                bottom=[f"h_neuron_input_{t}"], top=[f"h_{t}"])
            inner_product(f"W_ho_h_{t}", f"h_{t}", f"W_ho_h_{t}", ["W_ho", "b_o"], True)
            net_param.layer.add(name=f"o_neuron_{t}", type="TanH",
                                bottom=[f"W_ho_h_{t}"], top=[f"o_{t}"])
        concat = net_param.layer.add(name="o_concat", type="Concat", top=["o"],
                                     bottom=[f"o_{t}" for t in range(1, self.T + 1)])
        concat.concat_param.axis = 0
