// One registration function per exported feature (one file each).
#pragma once

#include <napi.h>

namespace ringtree::addon {

// buildInfo(): compiler, build system, SIMD levels compiled and offered.
void registerBuildInfo(Napi::Env env, Napi::Object exports);
// allocHost(): 2 MiB-aligned host memory advised for huge pages (HostMemory.cc).
void registerHostMemory(Napi::Env env, Napi::Object exports);
// reduceForTest(), setSimdLevel(), activeSimdLevel(): pure-unit test hooks.
void registerReduceHooks(Napi::Env env, Napi::Object exports);
// The Communicator class (CPU engine).
void registerCommunicator(Napi::Env env, Napi::Object exports);
void registerGemm(Napi::Env env, Napi::Object exports);  // gemm(), gemmSync(), blasInfo() (AddonGemm.cc)
// cudaLoad/ncclLoad/cublasLoad/cudaInfo, DeviceBuffer, deviceCopy/deviceFill/deviceGemm, NcclComm (AddonCuda.cc).
void registerCuda(Napi::Env env, Napi::Object exports);

// cublasProbe(): finds cuBLAS/cuBLASLt at run time and reads the version (doctor).
void registerCublasProbe(Napi::Env env, Napi::Object exports);

}  // namespace ringtree::addon
