// The CPU BLAS found at run time (DESIGN.md, "Vendor libraries are found at
// run time"). Nothing BLAS is needed to build: we declare the CBLAS subset we
// call from the public CBLAS/OpenBLAS documentation and dlopen, in order,
// $RINGTREE_BLAS_PATH (alone, when set), libopenblas.so.0, libopenblas.so,
// libblas.so.3. RINGTREE_BLAS=fallback skips the search.
#pragma once

#include <string>

namespace ringtree {

// CBLAS enum values (cblas.h, the reference CBLAS interface).
enum CblasOrder : int { CblasRowMajor = 101, CblasColMajor = 102 };
enum CblasTranspose : int { CblasNoTrans = 111, CblasTrans = 112, CblasConjTrans = 113 };

using CblasSgemm = void (*)(int order, int transA, int transB, int m, int n, int k, float alpha, const float* a,
                            int lda, const float* b, int ldb, float beta, float* c, int ldc);
using CblasDgemm = void (*)(int order, int transA, int transB, int m, int n, int k, double alpha, const double* a,
                            int lda, const double* b, int ldb, double beta, double* c, int ldc);

class BlasLibrary {
 public:
  enum class Vendor { OpenBlas, Reference, Fallback };

  // Loaded once, on first use, from any thread; never unloaded.
  static const BlasLibrary& instance();

  bool available() const { return sgemm != nullptr && dgemm != nullptr; }
  Vendor vendor() const { return vendor_; }
  static const char* vendorName(Vendor v);
  // The file the CBLAS symbols came from ("fallback" when none).
  const std::string& path() const { return path_; }
  // openblas_get_config(), or empty.
  const std::string& config() const { return config_; }
  // Why no library was loaded (every attempt), or empty.
  const std::string& error() const { return error_; }
  // True when RINGTREE_BLAS=fallback chose the fallback.
  bool forcedFallback() const { return forced_; }
  // Threads a call may use now: openblas_get_num_threads(), else 1.
  int threads() const;

  CblasSgemm sgemm = nullptr;
  CblasDgemm dgemm = nullptr;

 private:
  BlasLibrary();
  bool tryOpen(const std::string& name, std::string* why);

  Vendor vendor_ = Vendor::Fallback;
  std::string path_ = "fallback";
  std::string config_;
  std::string error_;
  bool forced_ = false;
  int (*getNumThreads_)() = nullptr;
};

}  // namespace ringtree
