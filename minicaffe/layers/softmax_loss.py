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

Device twin: `opencl/softmax_loss.cl`. The loss is totalled and normalized on the
device (the valid count never leaves it); backward reuses the normalizer that forward
computed, as the labels are the same.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer, register_layer
from minicaffe.layers.helpers import read_labels
from minicaffe.layers.loss import LossLayer

FLT_MIN = float(np.finfo(np.float32).tiny)


@register_layer
class SoftmaxWithLossLayer(LossLayer):
    """Softmax + multinomial logistic loss; see the module docstring for the maths."""

    type = "SoftmaxWithLoss"
    exact_num_top_blobs = -1
    min_top_blobs = 1
    max_top_blobs = 2

    def layer_setup(self, bottom, top):
        # The inner Softmax reads the same softmax_param; it has no loss weight of its own.
        self.softmax_layer = create_layer(self.inner_param("Softmax"))  # through the registry, as Caffe does
        self.prob = Blob(name=f"{self.name}.prob")
        # Device scratch (Caffe's loss_data and counts_): per-position losses and
        # 0/1 counts, and the scalar normalizer that forward works out for backward.
        self.losses = Blob(name=f"{self.name}.losses")
        self.counts = Blob(name=f"{self.name}.counts")
        self.normalizer = Blob((), name=f"{self.name}.normalizer")
        self.softmax_layer.setup([bottom[0]], [self.prob])
        self.ignore_label = self.given_ignore_label()
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
        self.losses.reshape(self.outer_num * self.inner_num)
        self.counts.reshape(self.outer_num * self.inner_num)

    def _prob_and_labels(self, bottom):
        prob = self.prob.cpu_data()
        label, valid = read_labels(self, prob.shape, bottom[1].cpu_data(), self.axis,
                                   self.ignore_label)
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

    # ---- device
    def _label_args(self, bottom):
        """Labels on the device (checked on the host first), with the shape and ignore_label."""
        read_labels(self, bottom[0].shape, bottom[1].cpu_data(), self.axis, self.ignore_label)
        return (bottom[1].gpu_data(), np.int32(bottom[0].shape[self.axis]),
                np.int32(self.inner_num), np.int32(self.ignore_label is not None),
                np.int32(self.ignore_label or 0))

    def forward_gpu(self, bottom, top):
        self.softmax_layer.forward([bottom[0]], [self.prob])
        positions = self.outer_num * self.inner_num
        opencl.kernel("softmax_loss.cl", "softmax_loss_forward")(
            positions, self.prob.gpu_data(), *self._label_args(bottom),
            self.losses.mutable_gpu_data(), self.counts.mutable_gpu_data())
        self.normalized_total_gpu(positions, top)
        if len(top) == 2:
            opencl.copy(self.prob.count, self.prob.gpu_data(), top[1].mutable_gpu_data())

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[1]:
            raise MinicaffeError(f"SoftmaxWithLoss layer {self.name!r} cannot backpropagate to "
                                 f"label inputs (bottom {bottom[1].name!r})")
        if not propagate_down[0]:
            return
        opencl.kernel("softmax_loss.cl", "softmax_loss_backward")(
            self.outer_num * self.inner_num, self.prob.gpu_data(), *self._label_args(bottom),
            top[0].gpu_diff(), self.normalizer.gpu_data(), bottom[0].mutable_gpu_diff())
