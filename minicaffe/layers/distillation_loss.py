r"""DistillationLoss: match a student's softened class probabilities to a teacher's.

A minicaffe extension, not a Caffe layer (its parameters are `distillation_param`, field
10001 of LayerParameter). Knowledge distillation (Hinton, Vinyals & Dean 2015,
"Distilling the Knowledge in a Neural Network") trains a small *student* net on the class
probabilities of a large, already trained *teacher*: they say not only which class is
right but how the teacher ranks the wrong ones ("a 7 that looks a bit like a 1"), which
one-hot labels cannot.

**Softened softmax.** With temperature $T > 0$ (`distillation_param.temperature`), the
scores $z$ along `distillation_param.axis` (default 1, as Softmax) become

$$ p^T_k(z) = \frac{e^{z_k / T}}{\sum_j e^{z_j / T}} . $$

$T = 1$ is the ordinary softmax; a larger $T$ flattens it, so the small probabilities of
the wrong classes, which carry the teacher's knowledge, grow large enough to learn from.
Write $q = p^T(s)$ for the student's scores $s$ (bottom 0) and $p = p^T(t)$ for the
teacher's $t$ (bottom 1).

**Loss.** Per position (outer index $i$, inner index $j$, as in Softmax), the Kullback-Leibler
divergence of the student's softened distribution from the teacher's, times $T^2$, summed
and divided by the normalizer $Z$ (`loss_param.normalization`, as SoftmaxWithLoss;
there are no labels, so every position counts and VALID is FULL, $Z$ = outer x inner; for
an N x C blob that is N, the batch mean):

$$ E = \frac{T^2}{Z} \sum_{i,j} \operatorname{KL}(p \,\|\, q)
     = \frac{T^2}{Z} \sum_{i,j} \sum_k p_k (\log p_k - \log q_k) . $$

Hinton et al. write the soft-target *cross entropy* $H(p, q) = -\sum_k p_k \log q_k$.
The two differ by the teacher's entropy $H(p) = -\sum_k p_k \log p_k$, which does not depend
on the student, so both give the same gradient and train the same student. KL is used
because its value means something on its own: it is 0 exactly when the student matches the
teacher and positive otherwise, so the logged loss measures the mismatch left, whereas
the cross entropy never falls below the teacher's entropy, a floor that changes with $T$.

**Gradient.** With $u = s / T$, $\partial(-\sum_k p_k \log q_k)/\partial u_k = q_k - p_k$
(softmax with cross entropy, using $\sum_k p_k = 1$), and $\partial u_k / \partial s_k = 1/T$, so

$$ \frac{\partial E}{\partial s_k} = \frac{w}{Z}\, T^2 \cdot \frac{q_k - p_k}{T}
   = \frac{w\,T}{Z} (q_k - p_k) , $$

$w$ being the loss weight (the top's diff). **Why $T^2$:** for large $T$,
$q_k \approx \frac1C\big(1 + (s_k - \bar s)/T\big)$ (C classes, $\bar s$ the mean score),
so $q_k - p_k \approx \frac{(s_k - \bar s) - (t_k - \bar t)}{C\,T}$ shrinks like $1/T$ and
the unscaled gradient like $1/T^2$. Multiplying by $T^2$ cancels that:
$\partial E / \partial s_k \to \frac{w}{CZ}\big((s_k - \bar s) - (t_k - \bar t)\big)$ (matching
logits, the paper's high-temperature limit), so the distillation term keeps the same weight
against a hard-label loss whatever $T$ is tried.

**The teacher learns nothing.** Its scores are targets: asking this layer for a gradient to
bottom 1 is an error. Freeze the teacher (lr_mult 0 on its parameters, so the Net never
asks) or write `propagate_down: true propagate_down: false`.

**Hard labels.** The paper adds the ordinary cross entropy with the true labels, at
temperature 1, with a smaller weight. That is a separate `SoftmaxWithLoss` layer on the
student's scores; each layer's `loss_weight` sets its share, as any two Caffe losses add up.

Bottoms: student scores $s$, teacher scores $t$, of the same shape (outer..., C, inner...)
with C on `axis`.   Top: the scalar loss.

    layer {
      name: "distill" type: "DistillationLoss"
      bottom: "student_ip2" bottom: "teacher_ip2" top: "distill_loss"
      distillation_param { temperature: 4 }
      loss_weight: 0.9
    }

Device twin: `opencl/distillation_loss.cl`. Forward keeps both softened distributions on
the device for backward; the loss is totalled by `opencl/loss.cl` as SoftmaxWithLoss's.
"""
import math

import numpy as np

from minicaffe import opencl
from minicaffe.blob import Blob
from minicaffe.common import MinicaffeError
from minicaffe.layer import register_layer
from minicaffe.layers.helpers import canonical_axis
from minicaffe.layers.loss import LossLayer, Norm


def log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """log softmax along `axis`, with the max subtracted first so exp cannot overflow."""
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


@register_layer
class DistillationLossLayer(LossLayer):
    """T^2 KL(softmax(t/T) || softmax(s/T)); see the module docstring for the maths."""

    type = "DistillationLoss"

    def layer_setup(self, bottom, top):
        param = self.layer_param.distillation_param
        self.temperature = float(param.temperature)
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise MinicaffeError(
                f"DistillationLoss layer {self.name!r}: distillation_param.temperature must be a "
                f"positive number, got {param.temperature}")
        if self.given_ignore_label() is not None:
            raise MinicaffeError(
                f"DistillationLoss layer {self.name!r}: loss_param.ignore_label has no meaning "
                f"here: the targets are the teacher's scores, not labels")
        # Without labels every position is valid, so VALID divides by what FULL does.
        self.normalization = self.normalization_mode()
        if self.normalization == Norm.VALID:
            self.normalization = Norm.FULL
        # Both softened distributions, kept by forward for backward; device scratch for
        # the per-position losses and the normalizer (see LossLayer.normalized_total_gpu).
        self.student_prob = Blob(name=f"{self.name}.student_prob")
        self.teacher_prob = Blob(name=f"{self.name}.teacher_prob")
        self.losses = Blob(name=f"{self.name}.losses")
        self.counts = Blob(name=f"{self.name}.counts")
        self.normalizer = Blob((), name=f"{self.name}.normalizer")

    def reshape(self, bottom, top):
        if bottom[0].shape != bottom[1].shape:
            raise MinicaffeError(
                f"DistillationLoss layer {self.name!r}: student scores {bottom[0].name!r} of shape "
                f"{bottom[0].shape} and teacher scores {bottom[1].name!r} of shape "
                f"{bottom[1].shape} must have the same shape")
        super().reshape(bottom, top)
        self.axis = canonical_axis(self, bottom[0], self.layer_param.distillation_param.axis)
        self.outer_num = bottom[0].count_range(0, self.axis)
        self.inner_num = bottom[0].count_range(self.axis + 1)
        self.student_prob.reshape_like(bottom[0])
        self.teacher_prob.reshape_like(bottom[0])
        self.losses.reshape(self.outer_num * self.inner_num)
        self.counts.reshape(self.outer_num * self.inner_num)

    def _normalizer(self) -> float:
        return self.get_normalizer(self.normalization, self.outer_num, self.inner_num)

    def _refuse_teacher_gradient(self, propagate_down, bottom):
        if propagate_down[1]:
            raise MinicaffeError(
                f"DistillationLoss layer {self.name!r} cannot backpropagate to the teacher's "
                f"scores (bottom {bottom[1].name!r}): they are the targets. Freeze the teacher "
                f"(lr_mult: 0 on its parameters) or set propagate_down: true propagate_down: false")

    def forward_cpu(self, bottom, top):
        T = self.temperature
        log_q = log_softmax(bottom[0].cpu_data() / np.float32(T), self.axis)
        log_p = log_softmax(bottom[1].cpu_data() / np.float32(T), self.axis)
        p = np.exp(log_p)  # may underflow to 0 where log_p is very negative: 0 * finite = 0
        self.student_prob.mutable_cpu_data()[...] = np.exp(log_q)
        self.teacher_prob.mutable_cpu_data()[...] = p
        kl = (p * (log_p - log_q)).sum(dtype=np.float64)
        top[0].mutable_cpu_data()[...] = T * T * kl / self._normalizer()

    def backward_cpu(self, top, propagate_down, bottom):
        self._refuse_teacher_gradient(propagate_down, bottom)
        if not propagate_down[0]:
            return
        scale = float(top[0].cpu_diff()) * self.temperature / self._normalizer()
        bottom[0].mutable_cpu_diff()[...] = scale * (self.student_prob.cpu_data()
                                                     - self.teacher_prob.cpu_data())

    # ---- device
    def forward_gpu(self, bottom, top):
        positions = self.outer_num * self.inner_num
        opencl.kernel("distillation_loss.cl", "distillation_loss_forward")(
            positions, bottom[0].gpu_data(), bottom[1].gpu_data(),
            np.int32(bottom[0].shape[self.axis]), np.int32(self.inner_num),
            np.float32(self.temperature), self.student_prob.mutable_gpu_data(),
            self.teacher_prob.mutable_gpu_data(), self.losses.mutable_gpu_data(),
            self.counts.mutable_gpu_data())
        self.normalized_total_gpu(positions, top)

    def backward_gpu(self, top, propagate_down, bottom):
        self._refuse_teacher_gradient(propagate_down, bottom)
        if not propagate_down[0]:
            return
        opencl.kernel("distillation_loss.cl", "distillation_loss_backward")(
            bottom[0].count, self.student_prob.gpu_data(), self.teacher_prob.gpu_data(),
            np.float32(self.temperature), top[0].gpu_diff(), self.normalizer.gpu_data(),
            bottom[0].mutable_gpu_diff())
