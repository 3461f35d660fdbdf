r"""Accuracy: the fraction of predictions whose true class is among the top k scores.

Caffe's `accuracy_layer.cpp`. Scores x have the classes on `accuracy_param.axis`
(default 1); every other position (outer index $i$, inner index $j$) has one label $l$.
A position counts as correct when fewer than k classes score at least as high as the
true one (ties count against it, as in Caffe):

$$ \text{correct}_{ij} = \Big|\{c \ne l : x_{icj} \ge x_{ilj}\}\Big| < k, \qquad
   \text{accuracy} = \frac{\sum \text{correct}}{\#\{\text{positions not ignored}\}} $$

(0 when every position is ignored). An optional second top holds the accuracy of each
class: correct / seen for the positions labelled with that class (0 if none).

The layer only measures: it has no backward and no loss weight; asking for a gradient
is an error.

Bottoms: scores (outer..., C, inner...), labels with outer*inner values.
Tops: the scalar accuracy; optionally per-class accuracy of shape (C,).

    layer {
      name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy"
      include { phase: TEST }
      accuracy_param { top_k: 5 }
    }

Device twin: `opencl/accuracy.cl`: a per-position check, then a one-group total.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import Layer, register_layer
from minicaffe.layers.helpers import launch_total, read_labels


@register_layer
class AccuracyLayer(Layer):
    """Top-k accuracy; see the module docstring."""

    type = "Accuracy"
    exact_num_bottom_blobs = 2
    min_top_blobs = 1
    max_top_blobs = 2

    def layer_setup(self, bottom, top):
        param = self.layer_param.accuracy_param
        self.top_k = param.top_k
        self.ignore_label = param.ignore_label if param.HasField("ignore_label") else None
        # Device scratch (Caffe's acc and counts): 0/1 per position.
        self.correct = Blob(name=f"{self.name}.correct")
        self.valid = Blob(name=f"{self.name}.valid")

    def reshape(self, bottom, top):
        self.axis = bottom[0].canonical_axis_index(self.layer_param.accuracy_param.axis)
        channels = bottom[0].shape[self.axis]
        if self.top_k > channels:
            raise MinicaffeError(f"Accuracy layer {self.name!r}: top_k ({self.top_k}) must be at "
                                 f"most the number of classes ({channels}) of {bottom[0].name!r} "
                                 f"of shape {bottom[0].shape}")
        outer, inner = bottom[0].count_range(0, self.axis), bottom[0].count_range(self.axis + 1)
        if outer * inner != bottom[1].count:
            raise MinicaffeError(
                f"Accuracy layer {self.name!r}: number of labels must match number of "
                f"predictions; scores {bottom[0].name!r} of shape {bottom[0].shape} with axis "
                f"{self.axis} need {outer * inner} labels, label blob {bottom[1].name!r} of "
                f"shape {bottom[1].shape} has {bottom[1].count}")
        top[0].reshape(())
        if len(top) > 1:
            top[1].reshape(channels)
        self.outer_num, self.inner_num = outer, inner
        self.correct.reshape(outer * inner)
        self.valid.reshape(outer * inner)

    def forward_cpu(self, bottom, top):
        scores = bottom[0].cpu_data()
        label, valid = read_labels(self, scores.shape, bottom[1].cpu_data(), self.axis,
                                   self.ignore_label)
        channels = scores.shape[self.axis]
        scores = scores.reshape(label.shape[0], channels, -1)
        true_score = np.take_along_axis(scores, np.where(valid, label, 0)[:, None, :], axis=1)
        num_better = (scores >= true_score).sum(axis=1) - 1  # the true class itself is not "better"
        correct = valid & (num_better < self.top_k)
        count = int(valid.sum())
        top[0].mutable_cpu_data()[...] = correct.sum() / count if count else 0.0
        if len(top) > 1:
            seen = np.bincount(label[valid], minlength=channels)
            hits = np.bincount(label[correct], minlength=channels)
            top[1].mutable_cpu_data()[...] = np.where(seen > 0, hits / np.maximum(seen, 1), 0.0)

    def backward_cpu(self, top, propagate_down, bottom):
        if any(propagate_down):
            raise MinicaffeError(f"Accuracy layer {self.name!r} has no backward: accuracy is a "
                                 f"measurement, not a differentiable loss")

    def forward_gpu(self, bottom, top):
        read_labels(self, bottom[0].shape, bottom[1].cpu_data(), self.axis, self.ignore_label)
        channels = bottom[0].shape[self.axis]
        positions = self.outer_num * self.inner_num
        opencl.kernel("accuracy.cl", "accuracy_forward")(
            positions, bottom[0].gpu_data(), bottom[1].gpu_data(), np.int32(channels),
            np.int32(self.inner_num), np.int32(self.top_k),
            np.int32(self.ignore_label is not None), np.int32(self.ignore_label or 0),
            self.correct.mutable_gpu_data(), self.valid.mutable_gpu_data())
        launch_total("accuracy.cl", "accuracy_total", positions, self.correct.gpu_data(),
                     self.valid.gpu_data(), top[0].mutable_gpu_data())
        if len(top) > 1:
            opencl.kernel("accuracy.cl", "accuracy_per_class")(
                channels, np.int32(positions), bottom[1].gpu_data(), self.correct.gpu_data(),
                self.valid.gpu_data(), top[1].mutable_gpu_data())

    backward_gpu = backward_cpu  # nothing to compute: only the error for a gradient request

    def allow_force_backward(self, bottom_index):
        return False
