// The device attributes the launchers decide by, queried once per device and
// process: conv's backward asked for the SM count on every call and the
// persistent recurrent planner for three attributes (and the occupancy, see
// plan_persistent) on every forward, each a call into the driver.
#pragma once

#include <cuda_runtime.h>

#include <map>
#include <mutex>

#include "fusednn/cuda_check.h"

namespace fusednn::cuda {

struct DeviceFacts {
  int multiprocessors = 0;
  bool cooperative_launch = false;
  int shared_optin = 0;  // bytes of dynamic shared memory a block may opt in to
};

inline int current_device() {
  int device = 0;
  FUSEDNN_CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

inline const DeviceFacts& device_facts(int device) {
  static std::mutex mutex;
  static std::map<int, DeviceFacts> known;  // references stay valid as it grows
  const std::lock_guard<std::mutex> lock(mutex);
  const auto found = known.find(device);
  if (found != known.end()) return found->second;
  DeviceFacts facts;
  int cooperative = 0;
  FUSEDNN_CUDA_CHECK(
      cudaDeviceGetAttribute(&facts.multiprocessors, cudaDevAttrMultiProcessorCount, device));
  FUSEDNN_CUDA_CHECK(cudaDeviceGetAttribute(&cooperative, cudaDevAttrCooperativeLaunch, device));
  FUSEDNN_CUDA_CHECK(cudaDeviceGetAttribute(&facts.shared_optin,
                                            cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  facts.cooperative_launch = cooperative != 0;
  return known.emplace(device, facts).first->second;
}

inline const DeviceFacts& current_device_facts() { return device_facts(current_device()); }

}  // namespace fusednn::cuda
