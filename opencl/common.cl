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

// group_sum(value, scratch): the sum of `value` over the work-group, returned to every
// work-item. Kernels that total a whole blob into one scalar run as ONE work-group:
// each work-item first adds up its share (KERNEL_LOOP), then the group adds its
// work-items' totals in local memory as a tree (the first half adds in the second
// half, then again on what is left), with a barrier between rounds so that every
// partner's value is written before it is read. Works for any work-group size.
// `scratch` holds one Dtype per work-item; the host passes it as local memory.
Dtype group_sum(Dtype value, __local Dtype* scratch) {
  const int lid = get_local_id(0);
  scratch[lid] = value;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (int active = get_local_size(0); active > 1;) {
    const int kept = (active + 1) / 2;  // the first `kept` values receive the rest
    if (lid < active - kept) scratch[lid] += scratch[lid + kept];
    barrier(CLK_LOCAL_MEM_FENCE);
    active = kept;
  }
  const Dtype total = scratch[0];
  barrier(CLK_LOCAL_MEM_FENCE);  // every work-item has read it: scratch may be reused
  return total;
}

#endif  // MINICAFFE_COMMON_CL
