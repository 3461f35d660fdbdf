r"""SigmoidCrossEntropyLoss: a logistic sigmoid followed by the binary cross-entropy, in one
numerically stable layer (multi-label classification, per-pixel binary targets).

Caffe's `sigmoid_cross_entropy_loss_layer.cpp` / `.cu`. Device twin:
`opencl/sigmoid_cross_entropy_loss.cl`.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer, register_layer
from minicaffe.layers.loss import LossLayer, Norm


@register_layer
class SigmoidCrossEntropyLossLayer(LossLayer):
    r"""Cross-entropy between targets $t \in [0, 1]$ and $p = \sigma(x)$, element by element.

    $$ E = -\frac{1}{Z} \sum_{i:\ t_i \ne \text{ignore}}
       \big( t_i \log p_i + (1 - t_i) \log(1 - p_i) \big), \qquad p_i = \sigma(x_i) $$

    computed without forming $\log p$ (which underflows for large $|x|$) as

    $$ -\big( t_i \log p_i + (1 - t_i) \log(1 - p_i) \big)
       = \max(x_i, 0) - x_i t_i + \log\!\big(1 + e^{-|x_i|}\big) $$

    $$ \frac{\partial E}{\partial x_i} = \frac{w}{Z} \big(\sigma(x_i) - t_i\big)
       \quad \text{(0 where ignored)} $$

    where $w$ is the loss weight (the top's diff). The sigmoid is an inner Sigmoid layer,
    as in Caffe; its output is kept for the gradient.

    Normalization $Z$ follows `loss_param.normalization` over N items of $D$ values
    (FULL: $N D$; VALID: the targets not ignored; BATCH_SIZE: $N$; NONE: 1). **Unlike
    the other loss layers, it defaults to BATCH_SIZE** when neither `normalization` nor
    the deprecated `normalize` is given, as in Caffe. `loss_param.ignore_label`, when
    set, leaves out every target whose integer part equals it (targets are truncated
    to int for that test, as in Caffe: `ignore_label: 0` would also drop a target 0.5).

    Targets carry no gradient: asking for one is an error.

    Bottoms: scores x of shape (N, ...); targets t with as many values (any shape).
    Top: the scalar loss.

        layer { name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "fc8" bottom: "tags"
                top: "loss" loss_param { ignore_label: -1 normalization: VALID } }
    """

    type = "SigmoidCrossEntropyLoss"

    def layer_setup(self, bottom, top):
        # The inner Sigmoid reads the same LayerParameter; it has no loss weight of its own.
        self.sigmoid_layer = create_layer(self.inner_param("Sigmoid"))  # as Caffe does
        self.sigmoid_output = Blob(name=f"{self.name}.sigmoid")
        self.sigmoid_layer.setup([bottom[0]], [self.sigmoid_output])
        self.ignore_label = self.given_ignore_label()
        self.normalization = self.normalization_mode(when_unset=Norm.BATCH_SIZE)
        # Device scratch: per-element losses, 0/1 counts, and the normalizer for backward.
        self.losses = Blob(name=f"{self.name}.losses")
        self.counts = Blob(name=f"{self.name}.counts")
        self.normalizer = Blob((), name=f"{self.name}.normalizer")

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if bottom[0].count != bottom[1].count:
            raise MinicaffeError(
                f"{self.type} layer {self.name!r}: scores and targets must have the same count; "
                f"{bottom[0].name!r} has shape {bottom[0].shape}, {bottom[1].name!r} has shape "
                f"{bottom[1].shape}")
        self.outer_num = bottom[0].shape[0]  # the batch size
        self.inner_num = bottom[0].count_range(1)
        self.sigmoid_layer.reshape([bottom[0]], [self.sigmoid_output])
        self.losses.reshape(bottom[0].count)
        self.counts.reshape(bottom[0].count)

    def _valid(self, target):
        if self.ignore_label is None:
            return np.ones(target.shape, dtype=bool)
        return target.astype(np.int64) != self.ignore_label  # truncated, as in Caffe

    def forward_cpu(self, bottom, top):
        self.sigmoid_layer.forward([bottom[0]], [self.sigmoid_output])
        x = bottom[0].cpu_data().ravel()
        t = bottom[1].cpu_data().ravel()
        valid = self._valid(t)
        losses = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
        self.normalizer_value = self.get_normalizer(self.normalization, self.outer_num,
                                                    self.inner_num, int(valid.sum()))
        top[0].mutable_cpu_data()[...] = losses[valid].sum(dtype=np.float64) / self.normalizer_value

    def backward_cpu(self, top, propagate_down, bottom):
        self._refuse_targets(propagate_down, bottom)
        if not propagate_down[0]:
            return
        t = bottom[1].cpu_data().reshape(bottom[0].shape)
        diff = (self.sigmoid_output.cpu_data() - t) * self._valid(t)
        scale = float(top[0].cpu_diff()) / self.normalizer_value
        bottom[0].mutable_cpu_diff()[...] = diff * scale

    def _refuse_targets(self, propagate_down, bottom):
        if propagate_down[1]:
            raise MinicaffeError(f"{self.type} layer {self.name!r} cannot backpropagate to "
                                 f"label inputs (bottom {bottom[1].name!r})")

    # ---- device
    def _ignore_args(self):
        return np.int32(self.ignore_label is not None), np.int32(self.ignore_label or 0)

    def forward_gpu(self, bottom, top):
        self.sigmoid_layer.forward([bottom[0]], [self.sigmoid_output])
        count = bottom[0].count
        opencl.kernel("sigmoid_cross_entropy_loss.cl", "sigmoid_cross_entropy_loss_forward")(
            count, bottom[0].gpu_data(), bottom[1].gpu_data(), *self._ignore_args(),
            self.losses.mutable_gpu_data(), self.counts.mutable_gpu_data())
        self.normalized_total_gpu(count, top)

    def backward_gpu(self, top, propagate_down, bottom):
        self._refuse_targets(propagate_down, bottom)
        if not propagate_down[0]:
            return
        opencl.kernel("sigmoid_cross_entropy_loss.cl", "sigmoid_cross_entropy_loss_backward")(
            bottom[0].count, self.sigmoid_output.gpu_data(), bottom[1].gpu_data(),
            *self._ignore_args(), top[0].gpu_diff(), self.normalizer.gpu_data(),
            bottom[0].mutable_gpu_diff())
