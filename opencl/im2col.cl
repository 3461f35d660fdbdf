// im2col / col2im: turn a convolution into one matrix product (Caffe's im2col.cu).
//
// For images of C channels, H x W, a kernel kh x kw, padding, stride and dilation,
// the output is OH x OW with
//   OH = (H + 2 pad_h - (dilation_h (kh - 1) + 1)) / stride_h + 1   (same for OW).
// im2col lays out every receptive field as one column of `col`, a matrix of shape
// (C kh kw) x (num OH OW): image n's fields fill columns n OH OW ... (n + 1) OH OW - 1,
//   col[(c kh + i) kw + j][(n OH + y) OW + x] = im[n][c][y stride_h - pad_h + i dilation_h]
//                                                      [x stride_w - pad_w + j dilation_w]
// and 0 where that pixel falls in the padding. With num = 1 this is Caffe's layout
// and convolution is weights (num_output x C kh kw) times col, one GEMM per image;
// with the whole batch side by side it is one GEMM for all images (see
// minicaffe/layers/base_conv.py for why that is faster).
//
// `im_offset` / `col_offset` say where the images and the columns start in their buffers.
#include "common.cl"

// Both kernels work a row at a time: on a CPU device (PoCL) a work-item that walks a
// contiguous run of memory is 5-10x faster than one work-item per value (measured
// on LeNet's layers), and GPUs still get thousands of work-items.
//
// im2col: one work-item per (row of col, image, output row y): row (c, i, j) of col
// holds kernel tap (i, j) of channel c, and along y it reads one image row, h =
// y stride_h - pad_h + i dilation_h, every stride_w-th pixel from j dilation_w - pad_w,
// into OW consecutive columns. n = C kh kw * num * OH.
__kernel void im2col(const int n, __global const Dtype* im, const int im_offset,
                     const int height, const int width,
                     const int kernel_h, const int kernel_w,
                     const int pad_h, const int pad_w,
                     const int stride_h, const int stride_w,
                     const int dilation_h, const int dilation_w,
                     const int height_col, const int width_col,
                     __global Dtype* col, const int col_offset, const int num) {
  const int taps = kernel_h * kernel_w;
  const int channels = n / (taps * num * height_col);
  KERNEL_LOOP(index, n) {
    const int y = index % height_col;
    const int image = (index / height_col) % num;
    const int row = index / (height_col * num);
    const int j = row % kernel_w, i = (row / kernel_w) % kernel_h, c = row / taps;
    const int h = y * stride_h - pad_h + i * dilation_h;
    // (row, image, y) in this order is exactly where the run starts in col.
    __global Dtype* dst = col + col_offset + index * width_col;
    if (h < 0 || h >= height) {  // the whole run lies in the padding
      for (int x = 0; x < width_col; ++x) dst[x] = 0;
    } else {
      __global const Dtype* src = im + im_offset + ((image * channels + c) * height + h) * width;
      const int w0 = j * dilation_w - pad_w;
      for (int x = 0; x < width_col; ++x) {
        const int w = w0 + x * stride_w;
        dst[x] = (w >= 0 && w < width) ? src[w] : 0;
      }
    }
  }
}

// col2im is the adjoint of im2col: every col entry is added back to the pixel it
// was copied from (padding entries are dropped). Overlapping fields share pixels, so
// a scatter by many work-items would need atomic adds; instead one work-item owns a
// whole image row (image, c, h), zeroes it and adds into it every run of col that
// im2col read from it: for each kernel row i with h = y stride_h - pad_h + i dilation_h
// for some output row 0 <= y < OH, and each kernel column j, the OW values of row
// (c, i, j) of col go to pixels x stride_w - pad_w + j dilation_w.  n = num * C * H.
__kernel void col2im(const int n, __global const Dtype* col, const int col_offset,
                     const int height, const int width,
                     const int kernel_h, const int kernel_w,
                     const int pad_h, const int pad_w,
                     const int stride_h, const int stride_w,
                     const int dilation_h, const int dilation_w,
                     const int height_col, const int width_col,
                     __global Dtype* im, const int im_offset, const int num) {
  const int plane = height_col * width_col, columns = num * plane;
  const int channels = n / (num * height);
  KERNEL_LOOP(index, n) {
    const int h = index % height, c = (index / height) % channels;
    const int image = index / (height * channels);
    __global Dtype* dst = im + im_offset + index * width;
    for (int w = 0; w < width; ++w) dst[w] = 0;
    for (int i = 0; i < kernel_h; ++i) {
      const int t = h + pad_h - i * dilation_h;  // y stride_h, if tap i reaches row h
      if (t < 0 || t % stride_h != 0 || t / stride_h >= height_col) continue;
      const int y = t / stride_h;
      for (int j = 0; j < kernel_w; ++j) {
        __global const Dtype* src = col + col_offset + ((c * kernel_h + i) * kernel_w + j) * columns
                                    + image * plane + y * width_col;
        const int w0 = j * dilation_w - pad_w;
        for (int x = 0; x < width_col; ++x) {
          const int w = w0 + x * stride_w;
          if (w >= 0 && w < width) dst[w] += src[x];
        }
      }
    }
  }
}

// ---- Any number of spatial axes (Caffe's im2col_nd / col2im_nd).
//
// The same two maps for d spatial axes. The geometry comes as one int array of
// 6 d values: size[d], out[d], kernel[d], pad[d], stride[d], dilation[d]. Rows of
// col are (c, i_1, ..., i_d), columns (image, o_1, ..., o_d), last index fastest.
#define MAX_AXES 8

__kernel void im2col_nd(const int n, __global const Dtype* im, const int im_offset,
                        const int num, const int num_axes, __global const int* geometry,
                        __global Dtype* col, const int col_offset) {
  __global const int* size = geometry;
  __global const int* out = geometry + num_axes;
  __global const int* kernel_shape = geometry + 2 * num_axes;
  __global const int* pad = geometry + 3 * num_axes;
  __global const int* stride = geometry + 4 * num_axes;
  __global const int* dilation = geometry + 5 * num_axes;
  int image_size = 1, plane = 1, fields = 1;
  for (int a = 0; a < num_axes; ++a) {
    image_size *= size[a];
    plane *= out[a];
    fields *= kernel_shape[a];
  }
  const int columns = num * plane;
  KERNEL_LOOP(index, n) {
    const int q = index % plane, image = (index / plane) % num, c = index / columns;
    const int channels = n / columns;
    int start[MAX_AXES], offset[MAX_AXES];  // field corner; kernel offset (an odometer)
    for (int a = num_axes - 1, rest = q; a >= 0; --a) {
      start[a] = (rest % out[a]) * stride[a] - pad[a];
      rest /= out[a];
      offset[a] = 0;
    }
    __global const Dtype* src = im + im_offset + (image * channels + c) * image_size;
    __global Dtype* dst = col + col_offset + c * fields * columns + image * plane + q;
    for (int f = 0; f < fields; ++f) {
      int pixel = 0;
      bool inside = true;
      for (int a = 0; a < num_axes; ++a) {
        const int p = start[a] + offset[a] * dilation[a];
        inside = inside && p >= 0 && p < size[a];
        pixel = pixel * size[a] + p;
      }
      dst[f * columns] = inside ? src[pixel] : 0;
      for (int a = num_axes - 1; a >= 0; --a) {  // next kernel offset, last axis fastest
        if (++offset[a] < kernel_shape[a]) break;
        offset[a] = 0;
      }
    }
  }
}

// One work-item per image pixel, gathering as col2im does: along each axis the output
// positions whose field covers the pixel form a range [first, last); the work-item
// visits the box of those ranges and keeps the positions a kernel tap really hits.
__kernel void col2im_nd(const int n, __global const Dtype* col, const int col_offset,
                        const int num, const int num_axes, __global const int* geometry,
                        __global Dtype* im, const int im_offset) {
  __global const int* size = geometry;
  __global const int* out = geometry + num_axes;
  __global const int* kernel_shape = geometry + 2 * num_axes;
  __global const int* pad = geometry + 3 * num_axes;
  __global const int* stride = geometry + 4 * num_axes;
  __global const int* dilation = geometry + 5 * num_axes;
  int image_size = 1, plane = 1, fields = 1;
  for (int a = 0; a < num_axes; ++a) {
    image_size *= size[a];
    plane *= out[a];
    fields *= kernel_shape[a];
  }
  const int columns = num * plane;
  const int channels = n / (num * image_size);
  KERNEL_LOOP(index, n) {
    const int c = (index / image_size) % channels, image = index / (image_size * channels);
    int padded[MAX_AXES], first[MAX_AXES], last[MAX_AXES], o[MAX_AXES];
    bool empty = false;
    for (int a = num_axes - 1, rest = index % image_size; a >= 0; --a) {
      padded[a] = rest % size[a] + pad[a];
      rest /= size[a];
      const int extent = (kernel_shape[a] - 1) * dilation[a] + 1;
      first[a] = padded[a] < extent ? 0 : (padded[a] - extent) / stride[a] + 1;
      last[a] = min(padded[a] / stride[a] + 1, out[a]);
      empty = empty || first[a] >= last[a];
      o[a] = first[a];
    }
    Dtype val = 0;
    while (!empty) {
      int field = 0, q = 0;
      bool hit = true;
      for (int a = 0; a < num_axes; ++a) {
        const int tap = padded[a] - o[a] * stride[a];
        hit = hit && tap % dilation[a] == 0;
        field = field * kernel_shape[a] + tap / dilation[a];
        q = q * out[a] + o[a];
      }
      if (hit) val += col[col_offset + (c * fields + field) * columns + image * plane + q];
      int a = num_axes - 1;  // next output position in the box, last axis fastest
      for (; a >= 0; --a) {
        if (++o[a] < last[a]) break;
        o[a] = first[a];
      }
      empty = a < 0;
    }
    im[im_offset + index] = val;
  }
}
