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

// hash_uniform(seed, i): a uniform in [0, 1), SplitMix64's output i for state `seed`
// (the top 24 bits as a float). The twin of minicaffe/layers/helpers.py's hash_uniform,
// line for line, so numpy and the device draw the same numbers (Dropout's masks,
// STOCHASTIC pooling's picks). Counter-based: u_i needs only (seed, i), so every
// work-item draws its own.
inline Dtype hash_uniform(const ulong seed, const int i) {
  ulong z = seed + ((ulong)i + 1) * 0x9E3779B97F4A7C15UL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
  z = z ^ (z >> 31);
  return (Dtype)(z >> 40) * (Dtype)(1.0f / 16777216.0f);  // 2^-24: exact in float
}

#endif  // MINICAFFE_COMMON_CL
