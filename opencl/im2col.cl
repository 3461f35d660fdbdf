// im2col / col2im: turn a convolution into one matrix product (Caffe's im2col.cu).
//
// For one image of C channels, H x W, a kernel kh x kw, padding, stride and
// dilation, the output is OH x OW with
//   OH = (H + 2 pad_h - (dilation_h (kh - 1) + 1)) / stride_h + 1   (same for OW).
// im2col lays out every receptive field as one column of `col`, a matrix of shape
// (C kh kw) x (OH OW):
//   col[(c kh + i) kw + j][y OW + x] = im[c][y stride_h - pad_h + i dilation_h]
//                                           [x stride_w - pad_w + j dilation_w]
// and 0 where that pixel falls in the padding. Convolution is then
// weights (num_output x C kh kw) times col, one GEMM per image.
//
// `im_offset` / `col_offset` say where this image starts in the batch buffer.
#include "common.cl"

// One work-item per (channel, output pixel): it copies that pixel's kh x kw
// receptive field into column y OW + x, rows c kh kw ... c kh kw + kh kw - 1.
// n = C * OH * OW.
__kernel void im2col(const int n, __global const Dtype* im, const int im_offset,
                     const int height, const int width,
                     const int kernel_h, const int kernel_w,
                     const int pad_h, const int pad_w,
                     const int stride_h, const int stride_w,
                     const int dilation_h, const int dilation_w,
                     const int height_col, const int width_col,
                     __global Dtype* col, const int col_offset) {
  KERNEL_LOOP(index, n) {
    const int x = index % width_col;
    const int y = (index / width_col) % height_col;
    const int c = index / (width_col * height_col);
    const int y0 = y * stride_h - pad_h, x0 = x * stride_w - pad_w;
    __global const Dtype* src = im + im_offset + c * height * width;
    // Consecutive rows of col are height_col * width_col apart.
    __global Dtype* dst = col + col_offset + (c * kernel_h * kernel_w) * height_col * width_col
                          + y * width_col + x;
    for (int i = 0; i < kernel_h; ++i) {
      for (int j = 0; j < kernel_w; ++j) {
        const int h = y0 + i * dilation_h, w = x0 + j * dilation_w;
        *dst = (h >= 0 && w >= 0 && h < height && w < width) ? src[h * width + w] : 0;
        dst += height_col * width_col;
      }
    }
  }
}

// col2im is the adjoint of im2col: every col entry is added back to the pixel it
// was copied from (padding entries are dropped). A scatter would need atomic adds,
// since overlapping fields share pixels; instead one work-item per image pixel
// gathers every col entry that came from it. n = C * H * W.
//
// Which entries came from pixel (h, w) of channel c? Those (i, j, y, x) with
//   h = y stride_h - pad_h + i dilation_h,  0 <= i < kh,  0 <= y < OH
// (and the same along w). Work in padded coordinates hp = h + pad_h: the output
// rows whose field can reach hp run from the first y with y stride_h + extent > hp,
// i.e. y >= (hp - extent) / stride_h + 1 (extent = dilation_h (kh - 1) + 1), to
// the last with y stride_h <= hp. For each such y the kernel offset hp - y stride_h
// must be a multiple of dilation_h; then i = (hp - y stride_h) / dilation_h.
__kernel void col2im(const int n, __global const Dtype* col, const int col_offset,
                     const int height, const int width,
                     const int kernel_h, const int kernel_w,
                     const int pad_h, const int pad_w,
                     const int stride_h, const int stride_w,
                     const int dilation_h, const int dilation_w,
                     const int height_col, const int width_col,
                     __global Dtype* im, const int im_offset) {
  KERNEL_LOOP(index, n) {
    const int hp = (index / width) % height + pad_h;
    const int wp = index % width + pad_w;
    const int c = index / (width * height);
    const int extent_h = (kernel_h - 1) * dilation_h + 1;
    const int extent_w = (kernel_w - 1) * dilation_w + 1;
    const int y_start = hp < extent_h ? 0 : (hp - extent_h) / stride_h + 1;
    const int y_end = min(hp / stride_h + 1, height_col);
    const int x_start = wp < extent_w ? 0 : (wp - extent_w) / stride_w + 1;
    const int x_end = min(wp / stride_w + 1, width_col);
    Dtype val = 0;
    for (int y = y_start; y < y_end; ++y) {
      for (int x = x_start; x < x_end; ++x) {
        int i = hp - y * stride_h, j = wp - x * stride_w;
        if (i % dilation_h == 0 && j % dilation_w == 0) {
          i /= dilation_h;
          j /= dilation_w;
          val += col[col_offset + ((((c * kernel_h + i) * kernel_w + j) * height_col + y)
                                   * width_col + x)];
        }
      }
    }
    im[im_offset + index] = val;
  }
}
