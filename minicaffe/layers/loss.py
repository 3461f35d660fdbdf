"""LossLayer: the base of layers that turn predictions and targets into a scalar loss.

Two bottoms (prediction, target), one scalar top whose loss weight defaults to 1, and
no gradient for the target (labels are data, not something to learn).

Also Caffe's loss normalization (`LossParameter.normalization`), shared by the loss
layers that average over output locations (SoftmaxWithLoss, InfogainLoss,
SigmoidCrossEntropyLoss):

    FULL        divide by every location, outer_num * inner_num
    VALID       divide by the locations whose label is not `ignore_label` (the default,
                but SigmoidCrossEntropyLoss defaults to BATCH_SIZE, as in Caffe)
    BATCH_SIZE  divide by outer_num, the batch size
    NONE        do not divide

The deprecated `normalize` field still works as in Caffe: with `normalization` unset,
`normalize: false` means BATCH_SIZE and `normalize: true` means VALID. The divisor is
never below 1, so an all-ignored batch gives loss 0 rather than 0/0.

On the device, a loss is totalled by ONE work-group (`helpers.launch_total`) that writes the
scalar top itself, so the only copy to the host is the scalar that Layer.forward reads.
The normalized total of the averaging losses is `opencl/loss.cl`.
"""
import numpy as np

from minicaffe.common import MinicaffeError
from minicaffe.layer import Layer
from minicaffe.layers.helpers import launch_total
from minicaffe.proto import caffe_pb2

Norm = caffe_pb2.LossParameter


class LossLayer(Layer):
    exact_num_bottom_blobs = 2
    exact_num_top_blobs = 1
    auto_top_blobs = True  # a loss layer may be written without a top
    default_loss_weight = 1.0

    def reshape(self, bottom, top):
        if bottom[0].shape[:1] != bottom[1].shape[:1]:
            raise MinicaffeError(
                f"{self.type} layer {self.name!r}: bottoms must have the same first (batch) "
                f"dimension, got {bottom[0].shape} and {bottom[1].shape}")
        top[0].reshape(())  # a scalar

    def allow_force_backward(self, bottom_index):
        return bottom_index != 1

    def inner_param(self, layer_type: str) -> caffe_pb2.LayerParameter:
        """A copy of this layer's LayerParameter as a `layer_type` without a loss weight: how
        Caffe gives a loss its inner Softmax or Sigmoid, which so reads the same *_param."""
        inner = caffe_pb2.LayerParameter()
        inner.CopyFrom(self.layer_param)
        inner.type = layer_type
        inner.ClearField("loss_weight")
        return inner

    def given_ignore_label(self) -> int | None:
        """`loss_param.ignore_label`, or None when unset: then no label is ignored."""
        loss_param = self.layer_param.loss_param
        return loss_param.ignore_label if loss_param.HasField("ignore_label") else None

    # ---- normalization (Caffe's LossLayer::GetNormalizer and its callers' set-up)
    def normalization_mode(self, when_unset: int = Norm.VALID) -> int:
        """The effective `LossParameter.NormalizationMode`, honouring the deprecated `normalize`.

        `when_unset` is the mode when neither field is given: the proto default VALID for
        most layers, but SigmoidCrossEntropyLoss keeps its historical BATCH_SIZE.
        """
        loss_param = self.layer_param.loss_param
        if loss_param.HasField("normalization"):
            return loss_param.normalization
        if loss_param.HasField("normalize"):
            return Norm.VALID if loss_param.normalize else Norm.BATCH_SIZE
        return when_unset

    @staticmethod
    def get_normalizer(mode: int, outer_num: int, inner_num: int, valid_count: int = -1) -> float:
        """The divisor of the summed loss; `valid_count` -1 means "every location is valid"."""
        if mode == Norm.FULL:
            normalizer = outer_num * inner_num
        elif mode == Norm.VALID:
            normalizer = outer_num * inner_num if valid_count == -1 else valid_count
        elif mode == Norm.BATCH_SIZE:
            normalizer = outer_num
        elif mode == Norm.NONE:
            normalizer = 1
        else:
            raise MinicaffeError(f"unknown loss normalization mode {mode}")
        return max(1.0, float(normalizer))

    def normalized_total_gpu(self, n: int, top) -> None:
        """On the device, top = the sum of the first n values of `self.losses` / Z, with Z
        kept in `self.normalizer` for backward: under VALID the count in `self.counts` of
        the positions not ignored, known only on the device; otherwise get_normalizer's
        value for `self.outer_num` x `self.inner_num`."""
        fixed = self.get_normalizer(self.normalization, self.outer_num, self.inner_num)
        launch_total("loss.cl", "normalized_loss_total", n, self.losses.gpu_data(),
                     self.counts.gpu_data(), np.int32(self.normalization == Norm.VALID),
                     np.float32(fixed), top[0].mutable_gpu_data(), self.normalizer.mutable_gpu_data())
