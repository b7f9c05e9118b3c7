// What one operation is, as the engine and the wire see it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/dtype.h"

namespace ringtree {

enum class OpKind : uint32_t {
  AllReduce = 1,
  ReduceScatter = 2,
  AllGather = 3,
  Broadcast = 4,
  Reduce = 5,
  Barrier = 6,
  Send = 7,
  Recv = 8,
};

enum class Algorithm : uint32_t { Ring = 0, Tree = 1 };

const char* opKindName(OpKind kind);
bool parseOpKind(const std::string& name, OpKind* out);
inline bool isCollective(OpKind k) { return k != OpKind::Send && k != OpKind::Recv; }

// An operation as submitted: the buffers and everything the peers must agree on.
struct OpDesc {
  OpKind kind = OpKind::Barrier;
  DType dtype = DType::Float32;
  ReduceOp op = ReduceOp::Sum;
  Algorithm algorithm = Algorithm::Ring;
  uint64_t count = 0;  // elements; per-rank count for reduceScatter/allGather
  int32_t root = -1;
  int32_t peer = -1;  // send/recv
  int32_t tag = 0;    // send/recv
  uint64_t chunkBytes = 0;
  int64_t timeoutMs = 300000;
  const void* input = nullptr;
  void* output = nullptr;
  size_t inputBytes = 0;
  size_t outputBytes = 0;
  uint64_t seq = 0;  // assigned by the engine (per class)
  // Engine-internal: an inline attempt (Engine::tryInline) already sent this
  // rank's data; the collective thread finishes the op.
  bool resume = false;
  // Engine-internal: an earlier op's message carried this op's data too
  // (queued small 2-rank allreduces travel as one batch, CollectiveArgs::ahead).
  bool sentAhead = false;
};

// Every message carries one of these (64 bytes, in the slot before the data).
// The collective fields let a receiver prove its peer is running the same op.
struct MsgHeader {
  uint8_t kind;  // OpKind
  uint8_t dtype;
  uint8_t op;
  uint8_t algorithm;
  // Shared memory: the channel's message number + 1, stored last (release)
  // by the sender. The receiver polls it in the slot itself instead of the
  // channel's head, so a message costs the transfer of the lines it occupies
  // and no other. Ignored over TCP.
  uint32_t stamp;
  uint64_t seq;
  uint64_t count;
  int32_t root;
  int32_t tag;
  uint64_t bytes;       // payload bytes in this slot
  uint64_t offset;      // p2p: byte offset of this fragment in the message
  uint64_t totalBytes;  // p2p: the whole message
  uint32_t step;        // collective: algorithm step
  uint32_t chunk;       // collective: chunk index
};
static_assert(sizeof(MsgHeader) == 64, "MsgHeader is one cache line");

// "allReduce(count=10, float32, sum)" style description for error messages.
std::string describeOp(OpKind kind, uint64_t count, DType dtype, ReduceOp op, int32_t root, uint64_t seq);
std::string describeOp(const OpDesc& d);
std::string describeHeader(const MsgHeader& h);

}  // namespace ringtree
