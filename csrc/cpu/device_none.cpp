// Device queries for a CPU-only build: no GPU, ever.
#if !FUSEDNN_WITH_CUDA
#include "fusednn/device.h"

namespace fusednn::cuda {

int device_count() { return 0; }
std::string device_description(int) { return ""; }
std::string runtime_version() { return ""; }
std::string driver_version() { return ""; }

}  // namespace fusednn::cuda
#endif
