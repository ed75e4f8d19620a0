#pragma once
// Empty on purpose: the declarations TVM's CUDA source takes from <mma.h> are in cuda_cpu_shim.h.
