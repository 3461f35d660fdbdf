r"""LSTM: a long short-term memory layer, unrolled into an inner Net of LSTMUnit steps.

Caffe's `lstm_layer.cpp`; the machinery (the inner Net, `cont`, the static input,
`expose_hidden`, weights shared across steps) is in `minicaffe/layers/recurrent.py`, and
one step's gates are the LSTMUnit layer's. No device twin of its own: the inner layers run
their kernels.
"""
from minicaffe.layer import register_layer
from minicaffe.layers.recurrent import RecurrentLayer
from minicaffe.proto import caffe_pb2


@register_layer
class LSTMLayer(RecurrentLayer):
    r"""At every step t = 1..T, for each of the N streams, with D = num_output:

    $$ g_t = W_{hc}\,(\mathrm{cont}_t\, h_{t-1}) + W_{xc}\, x_t + b_c
             \;[+\; W_{xc}^{static}\, x_{static}] \quad (4D \text{ gate inputs}) $$

    $$ [i, f, o, \tilde g] = [\sigma(g^{(0)}), \ \mathrm{cont}_t\,\sigma(g^{(1)}),\
         \sigma(g^{(2)}),\ \tanh(g^{(3)})] $$

    $$ c_t = f \odot c_{t-1} + i \odot \tilde g, \qquad h_t = o \odot \tanh(c_t) $$

    (the last two lines are the LSTMUnit layer). x_t is flattened from axis 2 on.
    `cont`_t = 0 marks the first step of a sequence: it zeroes both the inherited h (before
    W_hc) and the forget gate. The top is h = (h_1, ..., h_T), of shape (T, N, D). The
    parameters, in order: W_xc (4D, x_dim), b_c (4D), [W_xc_static (4D, static_dim)],
    W_hc (4D, D); weights from `recurrent_param.weight_filler`, biases from `bias_filler`.
    The gradient is backpropagation through time over the T steps of the batch.

    The unrolled net for one step (names prefixed with the layer's name): Scale
    `h_conted_{t-1}`; InnerProduct `transform_t`; Eltwise SUM `gate_input_t`; LSTMUnit
    `unit_t` (bottoms c_{t-1}, gate_input_t, cont_t; tops c_t, h_t); then Split `c_T_copy`
    names the last cell state c_T, and `h_concat` concatenates the h_t.

    Bottoms: x (T, N, ...), cont (T, N), [x_static (N, ...)], [h_0 and c_0, each
    (1, N, D), with expose_hidden].   Tops: h (T, N, D), [h_T and c_T with expose_hidden].

        layer { name: "lstm1" type: "LSTM" bottom: "x" bottom: "cont" top: "h"
                recurrent_param { num_output: 32
                  weight_filler { type: "uniform" min: -0.08 max: 0.08 }
                  bias_filler { type: "constant" value: 0 } } }
    """

    type = "LSTM"

    def recurrent_input_names(self):
        return ["h_0", "c_0"]

    def recurrent_output_names(self):
        return [f"h_{self.T}", "c_T"]

    def recurrent_input_shapes(self):
        shape = (1, self.N, self.layer_param.recurrent_param.num_output)
        return [shape, shape]

    def output_names(self):
        return ["h"]

    def fill_unrolled_net(self, net_param):
        p = self.layer_param.recurrent_param
        num_output = p.num_output

        def inner_product(name, bottom, top, params, bias):
            return self.add_inner_product(net_param, name, bottom, top, params, bias, 4 * num_output)

        # c_0 first, as in Caffe's Input layer; both states have the same shape.
        net_param.layer.add(name="recurrent_input", type="Input", top=["c_0", "h_0"],
                            input_param=caffe_pb2.InputParameter(
                                shape=[caffe_pb2.BlobShape(dim=s) for s in self.recurrent_input_shapes()]))
        # W_xc x_t + b_c for every step at once, and W_xc_static x_static, (1, N, 4D).
        cont_slice, x_slice = self.add_input_transforms(net_param, "W_xc", "b_c", 4 * num_output)
        for t in range(1, self.T + 1):
            cont_slice.top.append(f"cont_{t}")
            x_slice.top.append(f"W_xc_x_{t}")
            # h_conted_{t-1} = cont_t * h_{t-1}: 0 at a sequence's first step.
            scale = net_param.layer.add(name=f"h_conted_{t - 1}", type="Scale",
                                        bottom=[f"h_{t - 1}", f"cont_{t}"], top=[f"h_conted_{t - 1}"])
            scale.scale_param.axis = 0
            inner_product(f"transform_{t}", f"h_conted_{t - 1}", f"W_hc_h_{t - 1}", ["W_hc"], False)
            total = net_param.layer.add(name=f"gate_input_{t}", type="Eltwise",
                                        bottom=[f"W_hc_h_{t - 1}", f"W_xc_x_{t}"],
                                        top=[f"gate_input_{t}"],
                                        eltwise_param=caffe_pb2.EltwiseParameter(operation="SUM"))
            if self.static_input:
                total.bottom.append("W_xc_x_static")
            net_param.layer.add(name=f"unit_{t}", type="LSTMUnit",
                                bottom=[f"c_{t - 1}", f"gate_input_{t}", f"cont_{t}"],
                                top=[f"c_{t}", f"h_{t}"])
        net_param.layer.add(name="c_T_copy", type="Split", bottom=[f"c_{self.T}"], top=["c_T"])
        concat = net_param.layer.add(name="h_concat", type="Concat", top=["h"],
                                     bottom=[f"h_{t}" for t in range(1, self.T + 1)])
        concat.concat_param.axis = 0
