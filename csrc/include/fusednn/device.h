// Querying the GPU. Every function is safe on a machine with no GPU and no
// driver: counts are 0 and names empty there.
#pragma once

#include <string>

namespace fusednn::cuda {

// Number of usable CUDA devices; 0 with no driver, no GPU or a CPU-only build.
int device_count();

// Name, compute capability and memory of device `index`; "" when absent.
std::string device_description(int index);

// Runtime and driver versions as "major.minor"; "" in a CPU-only build.
std::string runtime_version();
std::string driver_version();

}  // namespace fusednn::cuda
