// Device queries over the statically linked CUDA runtime. With no driver the
// runtime reports an error, which here means "no GPU", never an exception.
#include <cuda_runtime.h>

#include <cstdio>

#include "fusednn/device.h"

namespace fusednn::cuda {

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return count;
}

std::string device_description(int index) {
  cudaDeviceProp prop;
  if (index < 0 || index >= device_count() ||
      cudaGetDeviceProperties(&prop, index) != cudaSuccess) {
    cudaGetLastError();
    return "";
  }
  char text[512];
  std::snprintf(text, sizeof(text), "%s (sm_%d%d, %.1f GiB)", prop.name, prop.major, prop.minor,
                static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0));
  return text;
}

static std::string format_version(int v) {
  return v <= 0 ? std::string() : std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

std::string runtime_version() {
  int v = 0;
  cudaRuntimeGetVersion(&v);
  return format_version(v);
}

std::string driver_version() {
  int v = 0;
  if (cudaDriverGetVersion(&v) != cudaSuccess) {
    cudaGetLastError();
    return "";
  }
  return format_version(v);
}

}  // namespace fusednn::cuda
