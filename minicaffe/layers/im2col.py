r"""Im2col: the column matrix of a convolution, as a layer (Caffe's `im2col_layer.cpp`).

Device twin: `opencl/im2col.cl`, the kernels Convolution builds its columns with.
This module is the layer; `minicaffe/im2col.py` (package level) holds the im2col and
col2im functions it and Convolution call on the host.
"""
from __future__ import annotations

from math import prod

from minicaffe import opencl
from minicaffe.common import MinicaffeError
from minicaffe.im2col import col2im, conv_out_shape, im2col
from minicaffe.layer import Layer, register_layer


@register_layer
class Im2colLayer(Layer):
    r"""Every receptive field of a convolution copied out as a column, one matrix per image.

    The bottom is $(N, C, S_1, \dots, S_d)$ (with `axis` = 1; a larger `axis` folds
    the leading axes into $N$). The geometry is a Convolution's (`convolution_param`'s
    `kernel_size`, `pad`, `stride`, `dilation`, or their `_h`/`_w` forms in 2-D; no
    `num_output`, no weights): along axis $a$ the kernel's extent is
    $e_a = r_a (k_a - 1) + 1$ and there are
    $O_a = \lfloor (S_a + 2 p_a - e_a) / s_a \rfloor + 1$ positions. The top is
    $(N, C \prod k, O_1, \dots, O_d)$: for image $n$, the matrix with one row per
    (channel, kernel offset) and one column per output position,

    $$ y_{n,\ (c, \mathbf{i}),\ \mathbf{o}} = x^{\mathrm{pad}}_{n,\ c,\ \mathbf{o}\odot\mathbf{s} + \mathbf{i}\odot\mathbf{r}} $$

    with the row index $(c, i_1, \dots, i_d)$ flattened, last fastest ($c \prod k +
    \dots$), and zero where the field reaches into the padding. A Convolution is the
    product of its weights, $(K, C \prod k)$, with this matrix. Backward is col2im,
    the adjoint: every column entry's gradient is added back to the pixel it was
    copied from (a pixel in $m$ fields gets $m$ terms); padding entries are dropped.

    $$ \frac{\partial E}{\partial x_{n,c,\mathbf{q}}} = \sum_{\mathbf{i},\mathbf{o}:\
       \mathbf{o}\odot\mathbf{s} + \mathbf{i}\odot\mathbf{r} - \mathbf{p} = \mathbf{q}}
       \frac{\partial E}{\partial y_{n,(c,\mathbf{i}),\mathbf{o}}} $$

    As in Caffe, backward always writes the bottom diff. Not in place.

    Bottom: x.   Top: the columns.

        layer { name: "cols" type: "Im2col" bottom: "data" top: "cols"
                convolution_param { kernel_size: 3 stride: 2 } }

    Both engines do the whole batch at once: the $N$ images of $C$ channels are one
    image of $N C$ channels, whose column matrix, rows $(n, c, \mathbf{i})$, is exactly
    the top's layout. numpy: `minicaffe/im2col.py`; device: `im2col`/`col2im` of
    `opencl/im2col.cl`, or their n-d forms for other than 2 spatial axes or with
    `force_nd_im2col`.
    """

    type = "Im2col"
    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def _error(self, message: str) -> MinicaffeError:
        return MinicaffeError(f"{self.type} layer {self.name!r}: {message}")

    def _spatial(self, name: str, h_w: tuple[str, str] | None, default: int | None) -> tuple:
        """One value per spatial axis: from `name` (once or once per axis), or the 2-D
        `_h`/`_w` pair, or `default` when neither is given."""
        p, d = self.layer_param.convolution_param, self.num_spatial_axes
        values = getattr(p, name)
        if h_w and (p.HasField(h_w[0]) or p.HasField(h_w[1])):
            if d != 2:
                raise self._error(f"{h_w[0]}/{h_w[1]} can only be used for 2-D, the bottom has "
                                  f"{d} spatial axes")
            if len(values):
                raise self._error(f"give either {name} or {h_w[0]}/{h_w[1]}, not both")
            return (getattr(p, h_w[0]), getattr(p, h_w[1]))
        if not values and default is not None:
            return (default,) * d
        if len(values) not in (1, d):
            raise self._error(f"{name} must be given once or once per spatial axis; given "
                              f"{len(values)} times for {d} spatial axes")
        return tuple(int(values[0 if len(values) == 1 else i]) for i in range(d))

    def layer_setup(self, bottom, top):
        p, x = self.layer_param.convolution_param, bottom[0]
        try:
            self.channel_axis = x.canonical_axis_index(p.axis)
        except MinicaffeError as err:
            raise self._error(str(err)) from None
        self.num_spatial_axes = x.num_axes - self.channel_axis - 1
        if self.num_spatial_axes < 1:
            raise self._error(f"bottom {x.name!r} {x.shape} has no spatial axis after the "
                              f"channel axis {self.channel_axis}")
        if not len(p.kernel_size) and not p.HasField("kernel_h") and not p.HasField("kernel_w"):
            raise self._error("kernel_size (or kernel_h and kernel_w) must be specified")
        self.kernel = self._spatial("kernel_size", ("kernel_h", "kernel_w"), None)
        self.stride = self._spatial("stride", ("stride_h", "stride_w"), 1)
        self.pad = self._spatial("pad", ("pad_h", "pad_w"), 0)
        self.dilation = self._spatial("dilation", None, 1)
        for name, values in (("kernel", self.kernel), ("stride", self.stride),
                             ("dilation", self.dilation)):
            if any(v <= 0 for v in values):
                raise self._error(f"{name} dimensions must be positive, got {values}")
        self.nd = self.num_spatial_axes != 2 or p.force_nd_im2col
        self._geometry = None

    def reshape(self, bottom, top):
        x = bottom[0]
        if top[0] is x:
            raise self._error("does not allow in-place computation: give the top a new name")
        if x.num_axes != self.channel_axis + 1 + self.num_spatial_axes:
            raise self._error(f"bottom {x.name!r} has shape {x.shape}; the number of axes may "
                              f"not change after setup")
        self.spatial = x.shape[self.channel_axis + 1:]
        try:
            self.out = conv_out_shape(self.spatial, self.kernel, self.pad, self.stride,
                                      self.dilation)
        except MinicaffeError as err:
            raise self._error(f"bottom {x.name!r} {x.shape}: {err}") from None
        # The batch as one image of N*C channels (see the class docstring).
        self.planes = x.count_range(0, self.channel_axis + 1)
        channels = x.shape[self.channel_axis] * prod(self.kernel)
        top[0].reshape(x.shape[:self.channel_axis] + (channels,) + self.out)

    def forward_cpu(self, bottom, top):
        x = bottom[0].cpu_data().reshape(1, self.planes, *self.spatial)
        im2col(x, self.kernel, self.pad, self.stride, self.dilation,
               out=top[0].mutable_cpu_data().reshape(-1))

    def backward_cpu(self, top, propagate_down, bottom):
        col2im(top[0].cpu_diff(), (1, self.planes, *self.spatial), self.kernel, self.pad,
               self.stride, self.dilation,
               out=bottom[0].mutable_cpu_diff().reshape(1, self.planes, *self.spatial))

    # ---- device
    def _device_geometry(self) -> opencl.ConvGeometry:
        """The n-d kernels' geometry on the device, made again only when the shape changes."""
        if self._geometry is None or self._geometry.size != tuple(self.spatial):
            self._geometry = opencl.ConvGeometry(self.spatial, self.kernel, self.pad,
                                                 self.stride, self.dilation)
        return self._geometry

    def forward_gpu(self, bottom, top):
        x, y = bottom[0].gpu_data(), top[0].mutable_gpu_data()
        if self.nd:
            opencl.im2col_nd(x, 1, self.planes, self._device_geometry(), y)
        else:
            opencl.im2col(x, self.planes, *self.spatial, *self.kernel, *self.pad,
                          *self.stride, *self.dilation, y)

    def backward_gpu(self, top, propagate_down, bottom):
        dy, dx = top[0].gpu_diff(), bottom[0].mutable_gpu_diff()
        if self.nd:
            opencl.col2im_nd(dy, 1, self.planes, self._device_geometry(), dx)
        else:
            opencl.col2im(dy, self.planes, *self.spatial, *self.kernel, *self.pad,
                          *self.stride, *self.dilation, dx)

