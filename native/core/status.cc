#include "core/status.h"

namespace ringtree {

const char* statusCodeName(StatusCode code) {
  switch (code) {
    case StatusCode::Ok: return "OK";
    case StatusCode::InvalidArgument: return "INVALID_ARGUMENT";
    case StatusCode::PeerLost: return "PEER_LOST";
    case StatusCode::CollectiveMismatch: return "COLLECTIVE_MISMATCH";
    case StatusCode::Timeout: return "TIMEOUT";
    case StatusCode::Aborted: return "ABORTED";
    case StatusCode::BackendUnavailable: return "BACKEND_UNAVAILABLE";
    case StatusCode::Internal: return "INTERNAL";
  }
  return "UNKNOWN";
}

}  // namespace ringtree
