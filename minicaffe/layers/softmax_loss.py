r"""SoftmaxWithLoss: softmax followed by the multinomial logistic loss, in one layer.

Caffe's `softmax_loss_layer.cpp`. Fusing the two gives a simple, numerically stable
gradient. With $p = \operatorname{softmax}(x)$ along `softmax_param.axis` (default 1)
and an integer label $l$ at every other position (outer index $i$, inner index $j$):

$$ E = -\frac{1}{Z} \sum_{i,j:\ l_{ij} \ne \text{ignore}} \log \max(p_{i,l_{ij},j},\ \text{FLT\_MIN}) $$

$$ \frac{\partial E}{\partial x_{ikj}} = \frac{w}{Z} \left( p_{ikj} - [k = l_{ij}] \right)
   \quad \text{(0 at ignored positions)} $$

where $w$ is the loss weight (the top's diff) and $Z$ the normalizer chosen by
`loss_param.normalization` (see `minicaffe.layers.loss`; VALID by default: the number of
positions not ignored). The max with FLT_MIN keeps $\log 0$ finite.

Labels carry no gradient: asking for one is an error, as in Caffe.

Bottoms: scores x of shape (outer..., C, inner...) with C on the softmax axis;
labels with outer*inner values (e.g. (N,) or (N, 1) for x of shape (N, C)), integers
in [0, C) or `ignore_label`.   Tops: the scalar loss; optionally the probabilities p.

    layer {
      name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss"
      loss_param { ignore_label: 255 normalization: VALID }
    }
"""
import numpy as np

from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layers.loss import LossLayer
from minicaffe.layers.softmax import SoftmaxLayer
from minicaffe.layer import register_layer

FLT_MIN = float(np.finfo(np.float32).tiny)


def read_labels(layer, scores: np.ndarray, labels: np.ndarray, axis: int, ignore_label):
    """Labels as ints of shape (outer, inner) and the mask of positions that count.

    Shared with Accuracy. Labels are truncated to int as Caffe's static_cast does;
    a label outside [0, C) that is not `ignore_label` is an error naming its position.
    """
    outer = int(np.prod(scores.shape[:axis]))
    channels = scores.shape[axis]
    if not np.all(np.isfinite(labels)):
        raise MinicaffeError(f"{layer.type} layer {layer.name!r}: labels must be finite numbers")
    label = labels.reshape(outer, -1).astype(np.int64)
    valid = np.ones(label.shape, dtype=bool) if ignore_label is None else label != ignore_label
    bad = valid & ((label < 0) | (label >= channels))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise MinicaffeError(
            f"{layer.type} layer {layer.name!r}: label {label[i, j]} at position {i * label.shape[1] + j} "
            f"is out of range [0, {channels}) for scores of shape {scores.shape} (axis {axis})")
    return label, valid


@register_layer
class SoftmaxWithLossLayer(LossLayer):
    """Softmax + multinomial logistic loss; see the module docstring for the maths."""

    type = "SoftmaxWithLoss"
    exact_num_top_blobs = -1
    min_top_blobs = 1
    max_top_blobs = 2

    def layer_setup(self, bottom, top):
        # The inner Softmax reads the same softmax_param; it has no loss weight of its own.
        softmax_param = type(self.layer_param)()
        softmax_param.CopyFrom(self.layer_param)
        softmax_param.type = "Softmax"
        softmax_param.ClearField("loss_weight")
        self.softmax_layer = SoftmaxLayer(softmax_param)
        self.prob = Blob(name=f"{self.name}.prob")
        self.softmax_layer.setup([bottom[0]], [self.prob])
        loss_param = self.layer_param.loss_param
        self.ignore_label = loss_param.ignore_label if loss_param.HasField("ignore_label") else None
        self.normalization = self.normalization_mode()

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.softmax_layer.reshape([bottom[0]], [self.prob])
        self.axis = bottom[0].canonical_axis_index(self.layer_param.softmax_param.axis)
        self.outer_num = bottom[0].count_range(0, self.axis)
        self.inner_num = bottom[0].count_range(self.axis + 1)
        if self.outer_num * self.inner_num != bottom[1].count:
            raise MinicaffeError(
                f"SoftmaxWithLoss layer {self.name!r}: number of labels must match number of "
                f"predictions; scores {bottom[0].name!r} of shape {bottom[0].shape} with softmax "
                f"axis {self.axis} need {self.outer_num * self.inner_num} labels, label blob "
                f"{bottom[1].name!r} of shape {bottom[1].shape} has {bottom[1].count}")
        if len(top) > 1:
            top[1].reshape_like(bottom[0])

    def _prob_and_labels(self, bottom):
        prob = self.prob.cpu_data()
        label, valid = read_labels(self, prob, bottom[1].cpu_data(), self.axis, self.ignore_label)
        prob = prob.reshape(self.outer_num, -1, self.inner_num)
        index = np.where(valid, label, 0)[:, None, :]  # ignored positions read class 0, then drop
        return prob, index, valid

    def forward_cpu(self, bottom, top):
        self.softmax_layer.forward([bottom[0]], [self.prob])
        prob, index, valid = self._prob_and_labels(bottom)
        p_true = np.take_along_axis(prob, index, axis=1)[:, 0, :]
        loss = -np.log(np.maximum(p_true[valid], FLT_MIN)).sum(dtype=np.float64)
        count = int(valid.sum())
        top[0].mutable_cpu_data()[...] = loss / self.get_normalizer(
            self.normalization, self.outer_num, self.inner_num, count)
        if len(top) == 2:
            top[1].mutable_cpu_data()[...] = self.prob.cpu_data()

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[1]:
            raise MinicaffeError(f"SoftmaxWithLoss layer {self.name!r} cannot backpropagate to "
                                 f"label inputs (bottom {bottom[1].name!r})")
        if not propagate_down[0]:
            return
        prob, index, valid = self._prob_and_labels(bottom)
        dx = prob.copy()
        np.put_along_axis(dx, index, np.take_along_axis(dx, index, axis=1) - 1, axis=1)
        dx *= valid[:, None, :]
        count = int(valid.sum())
        scale = float(top[0].cpu_diff()) / self.get_normalizer(
            self.normalization, self.outer_num, self.inner_num, count)
        bottom[0].mutable_cpu_diff()[...] = (dx * scale).reshape(bottom[0].shape)
