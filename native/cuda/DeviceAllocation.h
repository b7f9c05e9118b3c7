// Device memory owned (cuMemAlloc) or borrowed (fromPointer). Shared by every
// view and every op that uses it; freed when the last holder lets go, which is
// never before the ops that use it completed.
#pragma once

#include <cstddef>
#include <memory>

#include "core/status.h"
#include "cuda/CudaApi.h"

namespace ringtree::cuda {

class DeviceAllocation {
 public:
  static Status allocate(int device, size_t bytes, std::shared_ptr<DeviceAllocation>* out);
  // Memory that someone else owns and frees (a framework's tensor).
  static std::shared_ptr<DeviceAllocation> borrow(int device, CUdeviceptr ptr, size_t bytes);
  ~DeviceAllocation();
  DeviceAllocation(const DeviceAllocation&) = delete;
  DeviceAllocation& operator=(const DeviceAllocation&) = delete;

  int device() const { return device_; }
  CUdeviceptr pointer() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  bool owned() const { return owned_; }

 private:
  DeviceAllocation(int device, CUdeviceptr ptr, size_t bytes, bool owned)
      : device_(device), ptr_(ptr), bytes_(bytes), owned_(owned) {}
  int device_;
  CUdeviceptr ptr_;
  size_t bytes_;
  bool owned_;
};

}  // namespace ringtree::cuda
