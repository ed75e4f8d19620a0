#pragma once
// Empty on purpose: the declarations TVM's CUDA source takes from <cuda_fp16.h> are in cuda_cpu_shim.h.
