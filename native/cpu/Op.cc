#include "cpu/Op.h"

namespace ringtree {

const char* opKindName(OpKind kind) {
  switch (kind) {
    case OpKind::AllReduce: return "allReduce";
    case OpKind::ReduceScatter: return "reduceScatter";
    case OpKind::AllGather: return "allGather";
    case OpKind::Broadcast: return "broadcast";
    case OpKind::Reduce: return "reduce";
    case OpKind::Barrier: return "barrier";
    case OpKind::Send: return "send";
    case OpKind::Recv: return "recv";
  }
  return "unknown";
}

bool parseOpKind(const std::string& name, OpKind* out) {
  for (uint32_t k = 1; k <= 8; k++) {
    if (name == opKindName(OpKind(k))) {
      *out = OpKind(k);
      return true;
    }
  }
  return false;
}

static bool hasReduceOp(OpKind k) {
  return k == OpKind::AllReduce || k == OpKind::ReduceScatter || k == OpKind::Reduce;
}
static bool hasRoot(OpKind k) { return k == OpKind::Broadcast || k == OpKind::Reduce; }

std::string describeOp(OpKind kind, uint64_t count, DType dtype, ReduceOp op, int32_t root, uint64_t seq) {
  std::string s = opKindName(kind);
  s += "(";
  if (kind != OpKind::Barrier) {
    s += "count=" + std::to_string(count) + ", " + dtypeName(dtype);
    if (hasReduceOp(kind)) s += std::string(", ") + reduceOpName(op);
    if (hasRoot(kind)) s += ", root=" + std::to_string(root);
  }
  s += ") at seq " + std::to_string(seq);
  return s;
}

std::string describeOp(const OpDesc& d) { return describeOp(d.kind, d.count, d.dtype, d.op, d.root, d.seq); }

std::string describeHeader(const MsgHeader& h) {
  return describeOp(OpKind(h.kind), h.count, DType(h.dtype), ReduceOp(h.op), h.root, h.seq);
}

}  // namespace ringtree
