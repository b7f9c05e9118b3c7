// Runs one (batched) GEMM on the calling thread: through the BLAS found at
// run time, or the portable fallback. The GemmWorker thread calls it for the
// asynchronous API and the addon's gemmSync calls it directly.
#pragma once

#include "cpu/gemm/GemmDesc.h"
#include "core/status.h"

namespace ringtree {

// Validates d, then computes it. Never throws (allocation failures come
// back as an Internal status).
Status runGemm(const GemmDesc& d);

// Test hook: route every later call to the fallback even when a BLAS is
// loaded (true), or back to the BLAS (false).
void setGemmFallbackForced(bool forced);

// True when calls go to the fallback now (no BLAS, RINGTREE_BLAS=fallback, or the hook).
bool gemmUsesFallback();

}  // namespace ringtree
