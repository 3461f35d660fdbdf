r"""InfogainLoss: a softmax cross-entropy in which each true class weighs every predicted
class by a row of an "information gain" matrix H.

Caffe's `infogain_loss_layer.cpp` (Caffe runs it on the host in GPU mode; ours runs on
the device). Device twin: `opencl/infogain_loss.cl`.
"""
import numpy as np

from minicaffe import opencl, protoio
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import create_layer, register_layer
from minicaffe.layers.helpers import read_labels
from minicaffe.layers.loss import LossLayer
from minicaffe.proto import caffe_pb2

LOG_THRESHOLD = 1e-20  # Caffe's kLOG_THRESHOLD: the smallest probability taken to the log


@register_layer
class InfogainLossLayer(LossLayer):
    r"""Softmax, then the multinomial logistic loss generalised by a C x C matrix H.

    The layer takes raw scores (it applies its own inner Softmax along
    `infogain_loss_param.axis`, as current Caffe does; older Caffe took probabilities;
    `softmax_param.axis` is overridden).
    With $p = \operatorname{softmax}(x)$ over the C classes and an integer label $l$ at
    every other position (outer index $i$, inner index $j$):

    $$ E = -\frac{1}{Z} \sum_{i,j:\ l_{ij} \ne \text{ignore}} \ \sum_{k}
       H_{l_{ij} k} \log \max(p_{ikj},\ 10^{-20}) $$

    $$ \frac{\partial E}{\partial x_{ikj}} = \frac{w}{Z}
       \Big( p_{ikj} \sum_{k'} H_{l_{ij} k'} - H_{l_{ij} k} \Big)
       \quad \text{(0 at ignored positions)} $$

    where $w$ is the loss weight (the top's diff) and $Z$ the normalizer chosen by
    `loss_param.normalization` (VALID by default; see `minicaffe.layers.loss`). With
    H the identity this is SoftmaxWithLoss (up to the floor $10^{-20}$, Caffe's
    kLOG_THRESHOLD, in place of FLT_MIN). The deprecated `loss_param.normalize` is
    refused, as in Caffe.

    H is the third bottom when there is one (and may change between iterations),
    otherwise a BlobProto file named by `infogain_loss_param.source` (a .binaryproto,
    read once at set-up). Neither the labels nor H take a gradient: asking for one is
    an error.

    Bottoms: scores x of shape (outer..., C, inner...) with C on `axis`; labels with
    outer*inner values, integers in [0, C) or `ignore_label`; optionally H with C*C values.
    Tops: the scalar loss; optionally the probabilities p.

        layer { name: "loss" type: "InfogainLoss" bottom: "fc8" bottom: "label"
                top: "loss" infogain_loss_param { source: "H.binaryproto" } }
    """

    type = "InfogainLoss"
    exact_num_bottom_blobs = -1
    min_bottom_blobs, max_bottom_blobs = 2, 3
    exact_num_top_blobs = -1
    min_top_blobs, max_top_blobs = 1, 2

    def layer_setup(self, bottom, top):
        param = self.layer_param.infogain_loss_param
        # The inner Softmax reads a copy of this LayerParameter (so softmax_param.engine
        # applies) but works along infogain_loss_param.axis; no loss weight of its own.
        inner = self.inner_param("Softmax")
        inner.softmax_param.axis = param.axis
        self.softmax_layer = create_layer(inner)  # through the registry, as Caffe does
        self.prob = Blob(name=f"{self.name}.prob")
        self.softmax_layer.setup([bottom[0]], [self.prob])
        loss_param = self.layer_param.loss_param
        self.ignore_label = self.given_ignore_label()
        if loss_param.HasField("normalize"):
            raise MinicaffeError(f"{self.type} layer {self.name!r}: loss_param.normalize is "
                                 f"deprecated and not accepted here; use normalization")
        self.normalization = loss_param.normalization
        self.infogain = None  # H from the file, when there is no third bottom
        if len(bottom) < 3:
            if not param.HasField("source"):
                raise MinicaffeError(
                    f"{self.type} layer {self.name!r}: the infogain matrix H must be given, "
                    f"as a third bottom or as infogain_loss_param.source (a .binaryproto file)")
            self.infogain = Blob(name=param.source)
            self.infogain.from_proto(protoio.read_binary(param.source, caffe_pb2.BlobProto()))
        # Device scratch (as in SoftmaxWithLoss): per-position losses and 0/1 counts, and
        # the scalar normalizer that forward works out for backward.
        self.losses = Blob(name=f"{self.name}.losses")
        self.counts = Blob(name=f"{self.name}.counts")
        self.normalizer = Blob((), name=f"{self.name}.normalizer")

    def _h(self, bottom):
        return bottom[2] if len(bottom) == 3 else self.infogain

    def reshape(self, bottom, top):
        super().reshape(bottom, top)
        self.softmax_layer.reshape([bottom[0]], [self.prob])
        self.axis = bottom[0].canonical_axis_index(self.layer_param.infogain_loss_param.axis)
        self.outer_num = bottom[0].count_range(0, self.axis)
        self.inner_num = bottom[0].count_range(self.axis + 1)
        self.num_labels = bottom[0].shape[self.axis]
        if self.outer_num * self.inner_num != bottom[1].count:
            raise MinicaffeError(
                f"{self.type} layer {self.name!r}: number of labels must match number of "
                f"predictions; scores {bottom[0].name!r} of shape {bottom[0].shape} with axis "
                f"{self.axis} need {self.outer_num * self.inner_num} labels, label blob "
                f"{bottom[1].name!r} of shape {bottom[1].shape} has {bottom[1].count}")
        h = self._h(bottom)
        if h.count != self.num_labels ** 2:
            raise MinicaffeError(
                f"{self.type} layer {self.name!r}: H must be {self.num_labels}x{self.num_labels} "
                f"(one row and column per class on axis {self.axis}), {h.name!r} has shape "
                f"{h.shape}")
        if len(top) > 1:
            top[1].reshape_like(bottom[0])
        self.losses.reshape(self.outer_num * self.inner_num)
        self.counts.reshape(self.outer_num * self.inner_num)

    def _prob_h_labels(self, bottom):
        """p as (outer, C, inner); H as C x C; each position's label (0 where ignored); mask."""
        prob = self.prob.cpu_data().reshape(self.outer_num, self.num_labels, self.inner_num)
        label, valid = read_labels(self, bottom[0].shape, bottom[1].cpu_data(), self.axis,
                                   self.ignore_label)
        h = self._h(bottom).cpu_data().reshape(self.num_labels, self.num_labels)
        return prob, h, np.where(valid, label, 0), valid

    def forward_cpu(self, bottom, top):
        self.softmax_layer.forward([bottom[0]], [self.prob])
        prob, h, label, valid = self._prob_h_labels(bottom)
        rows = h[label]  # (outer, inner, C): the row of H of each position's true class
        log_p = np.log(np.maximum(prob, LOG_THRESHOLD)).transpose(0, 2, 1)  # (outer, inner, C)
        loss = -(rows * log_p).sum(axis=2)[valid].sum(dtype=np.float64)
        top[0].mutable_cpu_data()[...] = loss / self.get_normalizer(
            self.normalization, self.outer_num, self.inner_num, int(valid.sum()))
        if len(top) == 2:
            top[1].mutable_cpu_data()[...] = self.prob.cpu_data()

    def backward_cpu(self, top, propagate_down, bottom):
        self._refuse(propagate_down, bottom)
        if not propagate_down[0]:
            return
        prob, h, label, valid = self._prob_h_labels(bottom)
        rows = h[label].transpose(0, 2, 1)  # (outer, C, inner)
        dx = (prob * rows.sum(axis=1, keepdims=True) - rows) * valid[:, None, :]
        scale = float(top[0].cpu_diff()) / self.get_normalizer(
            self.normalization, self.outer_num, self.inner_num, int(valid.sum()))
        bottom[0].mutable_cpu_diff()[...] = (dx * scale).reshape(bottom[0].shape)

    def _refuse(self, propagate_down, bottom):
        for i, what in ((1, "label"), (2, "infogain")):
            if i < len(propagate_down) and propagate_down[i]:
                raise MinicaffeError(f"{self.type} layer {self.name!r} cannot backpropagate to "
                                     f"{what} inputs (bottom {bottom[i].name!r})")

    def allow_force_backward(self, bottom_index):
        return bottom_index == 0  # neither the labels nor H take a gradient

    # ---- device
    def _args(self, bottom):
        """Labels (checked on the host first), H, the shape and ignore_label, for the kernels."""
        read_labels(self, bottom[0].shape, bottom[1].cpu_data(), self.axis, self.ignore_label)
        return (bottom[1].gpu_data(), self._h(bottom).gpu_data(), np.int32(self.num_labels),
                np.int32(self.inner_num), np.int32(self.ignore_label is not None),
                np.int32(self.ignore_label or 0))

    def forward_gpu(self, bottom, top):
        self.softmax_layer.forward([bottom[0]], [self.prob])
        positions = self.outer_num * self.inner_num
        opencl.kernel("infogain_loss.cl", "infogain_loss_forward")(
            positions, self.prob.gpu_data(), *self._args(bottom), np.float32(LOG_THRESHOLD),
            self.losses.mutable_gpu_data(), self.counts.mutable_gpu_data())
        self.normalized_total_gpu(positions, top)
        if len(top) == 2:
            opencl.copy(self.prob.count, self.prob.gpu_data(), top[1].mutable_gpu_data())

    def backward_gpu(self, top, propagate_down, bottom):
        self._refuse(propagate_down, bottom)
        if not propagate_down[0]:
            return
        opencl.kernel("infogain_loss.cl", "infogain_loss_backward")(
            self.outer_num * self.inner_num, self.prob.gpu_data(), *self._args(bottom),
            top[0].gpu_diff(), self.normalizer.gpu_data(), bottom[0].mutable_gpu_diff())
