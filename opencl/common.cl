// Shared by every minicaffe kernel: the value type and the loop that covers n items.
//
// minicaffe.opencl compiles each .cl file with `-I <this directory>` and
// `-D DTYPE=float`, so every kernel file starts with `#include "common.cl"`.
#ifndef MINICAFFE_COMMON_CL
#define MINICAFFE_COMMON_CL

// The value type of every Blob. Caffe templates its kernels on Dtype (float or
// double); minicaffe stores float32 only, but kernels still say Dtype so that they
// read like Caffe's and so that one build option could switch the type.
#ifndef DTYPE
#define DTYPE float
#endif
typedef DTYPE Dtype;

// KERNEL_LOOP(i, n): run the body once for every i in [0, n).
//
// Caffe's CUDA_KERNEL_LOOP. The host launches a 1-D range whose size is n rounded
// up to a multiple of the work-group size, but capped (see opencl.Launcher), so
// one work-item may own several items: it starts at its global id and strides by
// the total number of work-items. The `i < n` test also discards the padding
// work-items that the rounding up added.
#define KERNEL_LOOP(i, n) \
  for (int i = get_global_id(0); i < (n); i += get_global_size(0))

#endif  // MINICAFFE_COMMON_CL
