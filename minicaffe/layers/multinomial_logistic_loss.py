r"""MultinomialLogisticLoss: the negative log of the probability given to the true class.

Caffe's `multinomial_logistic_loss_layer.cpp` (Caffe has no GPU version; ours runs on
the device too). Device twin: `opencl/multinomial_logistic_loss.cl`.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.common import MinicaffeError
from minicaffe.layer import register_layer
from minicaffe.layers.helpers import launch_total, read_labels
from minicaffe.layers.loss import LossLayer

LOG_THRESHOLD = 1e-20  # Caffe's kLOG_THRESHOLD: the smallest probability taken to the log


@register_layer
class MultinomialLogisticLossLayer(LossLayer):
    r"""Cross-entropy of given class probabilities against integer labels.

    The first bottom already holds probabilities $p$ (e.g. a Softmax top), one row of
    $D$ values per item $n$ of the batch of $N$; the label $l_n$ picks one of them:

    $$ E = -\frac{1}{N} \sum_n \log \max(p_{n, l_n},\ 10^{-20}) $$

    $$ \frac{\partial E}{\partial p_{nk}} = -\frac{w}{N}\,
       \frac{[k = l_n]}{\max(p_{n, l_n},\ 10^{-20})} $$

    where $w$ is the loss weight (the top's diff). The floor $10^{-20}$ (Caffe's
    kLOG_THRESHOLD) keeps the loss and the gradient finite when a probability is 0; it
    applies in the gradient too, as in Caffe. Always divided by the batch size: this
    layer reads no `loss_param`. Softmax followed by this layer computes what
    SoftmaxWithLoss does, less stably; prefer that one for training.

    Labels carry no gradient: asking for one is an error.

    Bottoms: probabilities of shape (N, D, ...) (D = everything after the first axis);
    labels, one per item: shape (N,) or (N, 1, 1, 1), integers in [0, D).
    Top: the scalar loss.

        layer { name: "loss" type: "MultinomialLogisticLoss" bottom: "prob" bottom: "label" }
    """

    type = "MultinomialLogisticLoss"

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        if bottom[1].count_range(1) != 1:
            raise MinicaffeError(
                f"{self.type} layer {self.name!r}: needs one label per item, but label blob "
                f"{bottom[1].name!r} has shape {bottom[1].shape}; expected ({bottom[0].num},) "
                f"or ({bottom[0].num}, 1, 1, 1)")
        self.num = bottom[0].num
        self.dim = bottom[0].count // self.num

    def _labels(self, bottom):
        """Labels as ints, one per item, checked against the D classes."""
        label, _ = read_labels(self, (self.num, self.dim), bottom[1].cpu_data(), 1, None)
        return label[:, 0]

    def forward_cpu(self, bottom, top):
        prob = bottom[0].cpu_data().reshape(self.num, self.dim)
        p_true = prob[np.arange(self.num), self._labels(bottom)]
        loss = -np.log(np.maximum(p_true, LOG_THRESHOLD)).sum(dtype=np.float64)
        top[0].mutable_cpu_data()[...] = loss / self.num

    def backward_cpu(self, top, propagate_down, bottom):
        self._refuse_labels(propagate_down, bottom)
        if not propagate_down[0]:
            return
        prob = bottom[0].cpu_data().reshape(self.num, self.dim)
        rows, label = np.arange(self.num), self._labels(bottom)
        diff = np.zeros_like(prob)  # only the true class's probability affects the loss
        scale = -float(top[0].cpu_diff()) / self.num
        diff[rows, label] = scale / np.maximum(prob[rows, label], LOG_THRESHOLD)
        bottom[0].mutable_cpu_diff()[...] = diff.reshape(bottom[0].shape)

    def _refuse_labels(self, propagate_down, bottom):
        if propagate_down[1]:
            raise MinicaffeError(f"{self.type} layer {self.name!r} cannot backpropagate to "
                                 f"label inputs (bottom {bottom[1].name!r})")

    # ---- device: labels are checked on the host (they come from a data layer there)
    def forward_gpu(self, bottom, top):
        self._labels(bottom)
        launch_total("multinomial_logistic_loss.cl", "multinomial_logistic_loss_forward",
                     self.num, bottom[0].gpu_data(), bottom[1].gpu_data(), np.int32(self.dim),
                     np.float32(LOG_THRESHOLD), np.float32(1 / self.num), top[0].mutable_gpu_data())

    def backward_gpu(self, top, propagate_down, bottom):
        self._refuse_labels(propagate_down, bottom)
        if not propagate_down[0]:
            return
        self._labels(bottom)
        opencl.kernel("multinomial_logistic_loss.cl", "multinomial_logistic_loss_backward")(
            bottom[0].count, bottom[0].gpu_data(), bottom[1].gpu_data(), np.int32(self.dim),
            np.float32(LOG_THRESHOLD), np.float32(-1 / self.num), top[0].gpu_diff(),
            bottom[0].mutable_gpu_diff())
