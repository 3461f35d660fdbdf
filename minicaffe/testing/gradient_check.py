r"""GradientChecker: compare a layer's backward pass with finite differences.

The semantics are those of Caffe's `test_gradient_check_util.hpp`, so a layer tested
here is tested the way Caffe tests it:

* The objective is $E = \tfrac12\sum_i y_i^2$ over every top (so $\partial E/\partial y = y$),
  or, in the single-element modes, $E = y_j$ for one top element $j$.
* Each input element $x$ (bottom data and the layer's parameter blobs) is nudged by
  $\pm h$ and the layer run forward again; the estimate is the central difference
  $\frac{E(x + h) - E(x - h)}{2h}$.
* Analytic and estimated gradients must agree within `threshold` scaled by
  $\max(|a|, |e|, 1)$.
* `check_gradient_eltwise` is for layers where top element j depends on bottom element
  j alone: only that element is estimated, and every other element's analytic
  gradient must be (about) 0, so a layer that leaks gradient sideways still fails.
* Near a kink (|x - kink| <= kink_range, e.g. ReLU at 0, max pooling ties) the
  comparison is skipped, because finite differences straddle the corner there.
* The RNG is reseeded before every forward, so stochastic layers (Dropout) draw the
  same mask for every evaluation.
"""
from __future__ import annotations

import numpy as np

from minicaffe import common
from minicaffe.blob import Blob


class GradientCheckFailure(AssertionError):
    pass


class GradientChecker:
    def __init__(self, stepsize: float = 1e-2, threshold: float = 1e-3, seed: int = 1701,
                 kink: float = 0.0, kink_range: float = -1.0):
        self.stepsize = stepsize
        self.threshold = threshold
        self.seed = seed
        self.kink = kink
        self.kink_range = kink_range

    # ---- public modes (Caffe's names)
    def check_gradient(self, layer, bottom: list[Blob], top: list[Blob], check_bottom: int = -1):
        """The summed-square objective over all tops; checks params and bottoms."""
        layer.setup(bottom, top)
        self.check_gradient_single(layer, bottom, top, check_bottom, -1, -1)

    def check_gradient_exhaustive(self, layer, bottom, top, check_bottom: int = -1):
        """One check per top element, with E = that element (slow: small blobs only)."""
        layer.setup(bottom, top)
        for i, blob in enumerate(top):
            for j in range(blob.count):
                self.check_gradient_single(layer, bottom, top, check_bottom, i, j)

    def check_gradient_eltwise(self, layer, bottom, top):
        """For element-wise layers: top element j depends only on bottom element j."""
        layer.setup(bottom, top)
        for i, blob in enumerate(top):
            for j in range(blob.count):
                self.check_gradient_single(layer, bottom, top, -1, i, j, element_wise=True)

    # ---- the core
    def check_gradient_single(self, layer, bottom, top, check_bottom, top_id, top_data_id,
                              element_wise: bool = False):
        """Check the gradient of one objective (all tops, or one top element).

        `check_bottom`: -1 checks every bottom, i >= 0 checks bottom i only, and any value
        below -1 checks the layer's parameters only (Caffe's convention).
        """
        if element_wise:
            assert not layer.blobs, "element-wise checks are for layers without parameters"
            assert top_id >= 0 and top_data_id >= 0
            for i, blob in enumerate(bottom):
                assert blob.count == top[top_id].count, (
                    f"element-wise check: bottom {i} has {blob.count} elements, "
                    f"top {top_id} has {top[top_id].count}")
        if check_bottom >= len(bottom):
            raise ValueError(f"check_bottom {check_bottom}: the layer has {len(bottom)} bottom(s)")
        propagate_down = [check_bottom == -1 or i == check_bottom for i in range(len(bottom))]
        blobs_to_check = list(layer.blobs) + [b for b, p in zip(bottom, propagate_down) if p]
        assert blobs_to_check, "no blobs to check"

        # Analytic gradients: one forward, one backward. Param diffs accumulate in
        # minicaffe as in Caffe, so clear them first.
        for blob in layer.blobs:
            blob.mutable_cpu_diff()[...] = 0
        self._forward(layer, bottom, top)
        self._objective_and_gradient(top, top_id, top_data_id)
        layer.backward(top, propagate_down, bottom)
        computed = [b.cpu_diff().astype(np.float64).ravel().copy() for b in blobs_to_check]

        for blob_id, blob in enumerate(blobs_to_check):
            for feat_id in range(blob.count):
                # In an element-wise layer top element j depends on bottom element j alone,
                # so every other element's true gradient is 0: no need to estimate it, but
                # the analytic one must still be (about) 0.
                if element_wise and feat_id != top_data_id:
                    estimated = 0.0
                else:
                    estimated = self._estimate(layer, bottom, top, blob, feat_id, top_id, top_data_id)
                feature = abs(float(blob.cpu_data().reshape(-1)[feat_id]))
                if self.kink - self.kink_range <= feature <= self.kink + self.kink_range:
                    continue
                analytic = computed[blob_id][feat_id]
                scale = max(abs(analytic), abs(estimated), 1.0)
                if abs(analytic - estimated) > self.threshold * scale:
                    raise GradientCheckFailure(
                        f"{layer.type} layer {layer.name!r}: gradient mismatch in blob "
                        f"{blob_id} ({'param' if blob_id < len(layer.blobs) else 'bottom'}) "
                        f"element {feat_id} (top {top_id}, element {top_data_id}): "
                        f"analytic {analytic:.6g} vs numeric {estimated:.6g}, "
                        f"tolerance {self.threshold * scale:.3g}")

    def _estimate(self, layer, bottom, top, blob, feat_id, top_id, top_data_id) -> float:
        """The central difference (E(x + h) - E(x - h)) / 2h for one element x of `blob`."""
        original = float(blob.cpu_data().reshape(-1)[feat_id])
        blob.mutable_cpu_data().reshape(-1)[feat_id] = original + self.stepsize
        self._forward(layer, bottom, top)
        positive = self._objective_and_gradient(top, top_id, top_data_id)
        blob.mutable_cpu_data().reshape(-1)[feat_id] = original - self.stepsize
        self._forward(layer, bottom, top)
        negative = self._objective_and_gradient(top, top_id, top_data_id)
        blob.mutable_cpu_data().reshape(-1)[feat_id] = original
        return (positive - negative) / self.stepsize / 2.0

    def _forward(self, layer, bottom, top) -> None:
        common.set_random_seed(self.seed)
        layer.forward(bottom, top)

    @staticmethod
    def _objective_and_gradient(top: list[Blob], top_id: int, top_data_id: int) -> float:
        """Set top diffs to dE/dtop and return E."""
        if top_id < 0:
            loss = 0.0
            for blob in top:
                y = blob.cpu_data()
                loss += float(np.sum(y.astype(np.float64) ** 2)) / 2.0
                blob.mutable_cpu_diff()[...] = y
            return loss
        for blob in top:
            blob.mutable_cpu_diff()[...] = 0
        loss_weight = 2.0  # Caffe's choice: a weight != 1 catches missing scaling
        top[top_id].mutable_cpu_diff().reshape(-1)[top_data_id] = loss_weight
        return loss_weight * float(top[top_id].cpu_data().reshape(-1)[top_data_id])
