#include "cuda/DeviceAllocation.h"

#include "cuda/CudaDriver.h"

namespace ringtree::cuda {

Status DeviceAllocation::allocate(int device, size_t bytes, std::shared_ptr<DeviceAllocation>* out) {
  CudaDriver& cu = CudaDriver::instance();
  RT_CHECK(cu.makeCurrent(device));
  CUdeviceptr ptr = 0;
  // cuMemAlloc of 0 bytes is an error; a zero-length array still gets a handle.
  if (bytes > 0) RT_CHECK(cu.check(cu.cuMemAlloc(&ptr, bytes), "cuMemAlloc"));
  out->reset(new DeviceAllocation(device, ptr, bytes, true));
  return Status::ok();
}

std::shared_ptr<DeviceAllocation> DeviceAllocation::borrow(int device, CUdeviceptr ptr, size_t bytes) {
  return std::shared_ptr<DeviceAllocation>(new DeviceAllocation(device, ptr, bytes, false));
}

DeviceAllocation::~DeviceAllocation() {
  if (!owned_ || ptr_ == 0) return;
  CudaDriver& cu = CudaDriver::instance();
  // The last holder is an op that completed or a released JS handle: nothing
  // on any stream uses the memory any more, so a plain free is safe.
  if (cu.makeCurrent(device_).isOk()) cu.cuMemFree(ptr_);
}

}  // namespace ringtree::cuda
