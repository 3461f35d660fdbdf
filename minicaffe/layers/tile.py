r"""Tile: repeat a blob's trailing block several times along an axis.

Caffe: `tile_layer.cpp` / `.cu`. Device twin: `opencl/tile.cl`.
"""
import numpy as np

from minicaffe import opencl
from minicaffe.common import MinicaffeError
from minicaffe.layer import Layer, register_layer


@register_layer
class TileLayer(Layer):
    r"""Repeat the bottom `tiles` times along `axis` (default 1), as `numpy.tile` does.

    For each index $o$ of the axes before `axis`, the block $x[o]$ (the axis and
    everything after it, $S$ entries along the axis) is written `tiles` times in a row:
    $$ y[o,\ t S + s,\ \dots] = x[o,\ s,\ \dots], \qquad t = 0 \dots T-1 $$
    so the top's axis has $T S$ entries. Each bottom value feeds T top values, and
    backward adds their gradients up:
    $$ \frac{\partial E}{\partial x[o, s, \dots]} = \sum_{t=0}^{T-1}
       \frac{\partial E}{\partial y[o,\ t S + s,\ \dots]} $$

    `tiles` has no default and must be at least 1; `axis` may be negative.

    Bottom: x.   Top: y, x's shape with the axis T times longer.

        layer { name: "tile" type: "Tile" bottom: "x" top: "y"
                tile_param { axis: 1 tiles: 3 } }
    """

    type = "Tile"
    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def _fail(self, message):
        raise MinicaffeError(f"{self.type} layer {self.name!r}: {message}")

    def reshape(self, bottom, top):
        param, x = self.layer_param.tile_param, bottom[0]
        try:
            self.axis = x.canonical_axis_index(param.axis)
        except MinicaffeError:
            self._fail(f"axis {param.axis} is out of range for bottom {x.name!r} of shape {x.shape}")
        if not param.HasField("tiles"):
            self._fail("tile_param.tiles (the number of copies) must be given")
        if param.tiles <= 0:
            self._fail(f"tile_param.tiles must be positive, got {param.tiles}")
        self.tiles = param.tiles
        shape = list(x.shape)
        shape[self.axis] *= self.tiles
        top[0].reshape(shape)
        self.outer = x.count_range(0, self.axis)  # blocks that are tiled separately
        self.inner = x.count_range(self.axis)      # values in one block

    def forward_cpu(self, bottom, top):
        block = bottom[0].cpu_data().reshape(self.outer, 1, self.inner)
        top[0].mutable_cpu_data().reshape(self.outer, self.tiles, self.inner)[...] = block

    def backward_cpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            dy = top[0].cpu_diff().reshape(self.outer, self.tiles, self.inner)
            bottom[0].mutable_cpu_diff().reshape(self.outer, self.inner)[...] = dy.sum(axis=1)

    def forward_gpu(self, bottom, top):
        opencl.kernel("tile.cl", "tile_forward")(
            top[0].count, bottom[0].gpu_data(), top[0].mutable_gpu_data(),
            np.int32(self.inner), np.int32(self.tiles))

    def backward_gpu(self, top, propagate_down, bottom):
        if propagate_down[0]:
            opencl.kernel("tile.cl", "tile_backward")(
                bottom[0].count, top[0].gpu_diff(), bottom[0].mutable_gpu_diff(),
                np.int32(self.inner), np.int32(self.tiles))
