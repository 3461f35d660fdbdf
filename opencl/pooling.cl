// Pooling, the device twin of minicaffe/layers/pooling.py (Caffe's pooling_layer.cu).
//
// Blobs are (N, C, H, W); every kernel works on planes, so N and C only appear fused
// as `plane` = n * C + c. Forward runs one work-item per output; backward runs one
// work-item per bottom pixel and *gathers* from the outputs whose windows cover it,
// so no two work-items ever write the same value and no atomics are needed (MAX with
// non-overlapping windows scatters instead: see max_pool_backward_scatter).
#include "common.cl"

// MAX: y = the largest in-image pixel of the window, mask = its index h * W + w in
// the plane. Walking rows then columns with a strict '>' from -FLT_MAX keeps the first
// maximum in row-major order (ties agree with the numpy engine), and NaN or -inf
// never win; a window that nothing beats keeps -FLT_MAX and mask -1.
__kernel void max_pool_forward(const int n, __global const Dtype* bottom,
                               const int height, const int width,
                               const int pooled_height, const int pooled_width,
                               const int kernel_h, const int kernel_w,
                               const int stride_h, const int stride_w,
                               const int pad_h, const int pad_w,
                               __global Dtype* top, __global Dtype* mask) {
  KERNEL_LOOP(index, n) {
    const int pw = index % pooled_width;
    const int ph = (index / pooled_width) % pooled_height;
    const int plane = index / pooled_width / pooled_height;
    const int hstart = max(ph * stride_h - pad_h, 0);
    const int wstart = max(pw * stride_w - pad_w, 0);
    const int hend = min(ph * stride_h - pad_h + kernel_h, height);
    const int wend = min(pw * stride_w - pad_w + kernel_w, width);
    __global const Dtype* x = bottom + plane * height * width;
    Dtype maxval = -FLT_MAX;
    int maxidx = -1;
    for (int h = hstart; h < hend; ++h) {
      for (int w = wstart; w < wend; ++w) {
        if (x[h * width + w] > maxval) {
          maxidx = h * width + w;
          maxval = x[maxidx];
        }
      }
    }
    top[index] = maxval;
    mask[index] = maxidx;
  }
}

// AVE: y = the sum of the window's in-image pixels / |P|, where |P| is the window's
// size clipped to the *padded* image (padding counts as zeros in the mean). A window
// past the padding (stride > kernel) has no pixels: its size is taken as 1, so y = 0.
__kernel void ave_pool_forward(const int n, __global const Dtype* bottom,
                               const int height, const int width,
                               const int pooled_height, const int pooled_width,
                               const int kernel_h, const int kernel_w,
                               const int stride_h, const int stride_w,
                               const int pad_h, const int pad_w, __global Dtype* top) {
  KERNEL_LOOP(index, n) {
    const int pw = index % pooled_width;
    const int ph = (index / pooled_width) % pooled_height;
    const int plane = index / pooled_width / pooled_height;
    int hstart = ph * stride_h - pad_h;
    int wstart = pw * stride_w - pad_w;
    int hend = min(hstart + kernel_h, height + pad_h);
    int wend = min(wstart + kernel_w, width + pad_w);
    const Dtype pool_size = max(hend - hstart, 1) * max(wend - wstart, 1);
    hstart = max(hstart, 0);
    wstart = max(wstart, 0);
    hend = min(hend, height);
    wend = min(wend, width);
    __global const Dtype* x = bottom + plane * height * width;
    Dtype aveval = 0;
    for (int h = hstart; h < hend; ++h) {
      for (int w = wstart; w < wend; ++w) {
        aveval += x[h * width + w];
      }
    }
    top[index] = aveval / pool_size;
  }
}

// The windows covering padded row hp (= h + pad_h) are those starting in
// (hp - kernel_h, hp]: ph from `first_window(hp, kernel_h, stride_h)` up to
// `last_window(hp, stride_h, pooled_height)` (exclusive).
int first_window(const int padded, const int kernel_size, const int stride) {
  return padded < kernel_size ? 0 : (padded - kernel_size) / stride + 1;
}

int last_window(const int padded, const int stride, const int pooled) {
  return min(padded / stride + 1, pooled);
}

// MAX backward: dx at pixel (h, w) = the sum of dy over the covering windows whose
// mask names this pixel; windows are visited in row-major order, as the numpy engine
// adds them.
__kernel void max_pool_backward(const int n, __global const Dtype* top_diff,
                                __global const Dtype* mask,
                                const int height, const int width,
                                const int pooled_height, const int pooled_width,
                                const int kernel_h, const int kernel_w,
                                const int stride_h, const int stride_w,
                                const int pad_h, const int pad_w,
                                __global Dtype* bottom_diff) {
  KERNEL_LOOP(index, n) {
    const int w = index % width;
    const int h = (index / width) % height;
    const int plane = index / width / height;
    const int phstart = first_window(h + pad_h, kernel_h, stride_h);
    const int phend = last_window(h + pad_h, stride_h, pooled_height);
    const int pwstart = first_window(w + pad_w, kernel_w, stride_w);
    const int pwend = last_window(w + pad_w, stride_w, pooled_width);
    const int offset = plane * pooled_height * pooled_width;
    const Dtype pixel = h * width + w;  // the mask holds indices as exact float integers
    Dtype gradient = 0;
    for (int ph = phstart; ph < phend; ++ph) {
      for (int pw = pwstart; pw < pwend; ++pw) {
        if (mask[offset + ph * pooled_width + pw] == pixel) {
          gradient += top_diff[offset + ph * pooled_width + pw];
        }
      }
    }
    bottom_diff[index] = gradient;
  }
}

// MAX backward when windows cannot overlap (stride >= kernel, as in LeNet's 2x2/2):
// every bottom pixel is the argmax of at most one window, so each window can write
// its gradient straight to its argmax (the host zeroes bottom_diff first). One
// work-item per top element instead of per bottom pixel, and no window search.
__kernel void max_pool_backward_scatter(const int n, __global const Dtype* top_diff,
                                        __global const Dtype* mask,
                                        const int pooled_size, const int image_size,
                                        __global Dtype* bottom_diff) {
  KERNEL_LOOP(index, n) {
    const int argmax = (int)mask[index];
    if (argmax >= 0) {
      bottom_diff[(index / pooled_size) * image_size + argmax] = top_diff[index];
    }
  }
}

// AVE backward: dx at pixel (h, w) = the sum over covering windows of dy / |P|.
__kernel void ave_pool_backward(const int n, __global const Dtype* top_diff,
                                const int height, const int width,
                                const int pooled_height, const int pooled_width,
                                const int kernel_h, const int kernel_w,
                                const int stride_h, const int stride_w,
                                const int pad_h, const int pad_w,
                                __global Dtype* bottom_diff) {
  KERNEL_LOOP(index, n) {
    const int w = index % width;
    const int h = (index / width) % height;
    const int plane = index / width / height;
    const int phstart = first_window(h + pad_h, kernel_h, stride_h);
    const int phend = last_window(h + pad_h, stride_h, pooled_height);
    const int pwstart = first_window(w + pad_w, kernel_w, stride_w);
    const int pwend = last_window(w + pad_w, stride_w, pooled_width);
    const int offset = plane * pooled_height * pooled_width;
    Dtype gradient = 0;
    for (int ph = phstart; ph < phend; ++ph) {
      for (int pw = pwstart; pw < pwend; ++pw) {
        const int hstart = ph * stride_h - pad_h;
        const int wstart = pw * stride_w - pad_w;
        const int hend = min(hstart + kernel_h, height + pad_h);
        const int wend = min(wstart + kernel_w, width + pad_w);
        const Dtype pool_size = (hend - hstart) * (wend - wstart);
        gradient += top_diff[offset + ph * pooled_width + pw] / pool_size;
      }
    }
    bottom_diff[index] = gradient;
  }
}

// STOCHASTIC, TRAIN: pick pixel p of the window with probability x_p / S, S the window's
// sum: draw u = hash_uniform(seed, index) (the same draw as numpy's), walk the window
// in row-major order with a running sum, and pick the first pixel where it reaches
// u S. y = the picked value; mask = its index h * W + w, so that backward is MAX's.
// No pick (an empty window, or negative inputs that never reach u S): y = 0, mask -1.
// STOCHASTIC takes no padding (pad_h = pad_w = 0, checked on the host).
__kernel void sto_pool_forward_train(const int n, __global const Dtype* bottom,
                                     const int height, const int width,
                                     const int pooled_height, const int pooled_width,
                                     const int kernel_h, const int kernel_w,
                                     const int stride_h, const int stride_w,
                                     const int pad_h, const int pad_w, const ulong seed,
                                     __global Dtype* top, __global Dtype* mask) {
  KERNEL_LOOP(index, n) {
    const int pw = index % pooled_width;
    const int ph = (index / pooled_width) % pooled_height;
    const int plane = index / pooled_width / pooled_height;
    const int hstart = ph * stride_h;
    const int wstart = pw * stride_w;
    const int hend = min(hstart + kernel_h, height);
    const int wend = min(wstart + kernel_w, width);
    __global const Dtype* x = bottom + plane * height * width;
    Dtype sum = 0;
    for (int h = hstart; h < hend; ++h) {
      for (int w = wstart; w < wend; ++w) sum += x[h * width + w];
    }
    const Dtype threshold = hash_uniform(seed, index) * sum;
    Dtype running = 0, picked = 0;
    int pick = -1;
    for (int h = hstart; h < hend && pick < 0; ++h) {
      for (int w = wstart; w < wend && pick < 0; ++w) {
        running += x[h * width + w];
        if (running >= threshold) {
          pick = h * width + w;
          picked = x[pick];
        }
      }
    }
    top[index] = picked;
    mask[index] = pick;
  }
}

// STOCHASTIC, TEST: the expected pick, y = sum x^2 / sum x over the window (0 if the
// sum is not positive).
__kernel void sto_pool_forward_test(const int n, __global const Dtype* bottom,
                                    const int height, const int width,
                                    const int pooled_height, const int pooled_width,
                                    const int kernel_h, const int kernel_w,
                                    const int stride_h, const int stride_w,
                                    const int pad_h, const int pad_w, __global Dtype* top) {
  KERNEL_LOOP(index, n) {
    const int pw = index % pooled_width;
    const int ph = (index / pooled_width) % pooled_height;
    const int plane = index / pooled_width / pooled_height;
    const int hstart = ph * stride_h;
    const int wstart = pw * stride_w;
    const int hend = min(hstart + kernel_h, height);
    const int wend = min(wstart + kernel_w, width);
    __global const Dtype* x = bottom + plane * height * width;
    Dtype sum = 0, squares = 0;
    for (int h = hstart; h < hend; ++h) {
      for (int w = wstart; w < wend; ++w) {
        sum += x[h * width + w];
        squares += x[h * width + w] * x[h * width + w];
      }
    }
    top[index] = sum > 0 ? squares / sum : 0;
  }
}
