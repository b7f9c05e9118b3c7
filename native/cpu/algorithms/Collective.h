// What every algorithm receives, and the helpers they share: header stamping,
// header checking (collective mismatch detection), segment/chunk arithmetic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>
#if defined(__x86_64__)
#include <emmintrin.h>
#endif

#include "core/reduce.h"
#include "core/status.h"
#include "cpu/HugePages.h"
#include "cpu/Op.h"
#include "cpu/transport/Transport.h"
#include "cpu/transport/CrossMemory.h"

namespace ringtree {

// pairAllGather's recent times per path and size class (log2 of the block
// bytes), kept by the engine across ops: nanoseconds per byte, 0 for none yet.
struct PairPathTimes {
  double nsPerByte[2][64] = {};  // [0]: slots, [1]: direct
  bool warm[2][64] = {};         // the path ran once in that class (untimed)
  int force = -1;                // RINGTREE_PAIR_PATH: 0 the slots, 1 direct, -1 by huge pages and times
  bool proposeDirect(uint64_t bytes) const;
  // What op `seq` proposes: `force` where set; else every 16th op (by
  // sequence number, the same on both ranks) the slots, every 16th direct,
  // and proposeDirect() otherwise.
  bool proposeFor(uint64_t seq, uint64_t bytes) const;
  void record(bool direct, uint64_t bytes, int64_t ns);
};

// A 2-rank op's first message (pairAllGather, pairAllReduce): the sender's
// buffer, and which path it proposes.
struct PairOffer {
  uint64_t address;
  uint64_t bytes;
  uint64_t direct;  // 1: this rank proposes the direct path
  uint64_t huge;    // 1: the buffer (pairAllReduce: and the output) is on huge pages (HugePages::covers)
  uint64_t output = 0;  // pairAllReduce: the sender's output
};

struct CollectiveArgs {
  Transport* transport;
  const OpDesc* op;
  // Elements per message; at least 1 and at most slotBytes / element size.
  size_t chunkElems;
  // Write final results to the user's output with non-temporal stores: for
  // outputs far larger than the caches, this skips reading every output line
  // before overwriting it (the write-allocate that costs out-of-place ops a
  // third of their memory traffic).
  bool streamOutput = false;
  // An inline attempt (Engine::tryInline), on the caller's thread: wait at
  // most inlineBudgetNs for the peer, then set *deferred and return Ok with
  // the op half done (op.resume tells the collective thread where to go on).
  int64_t inlineBudgetNs = 0;
  bool* deferred = nullptr;
  // One-hop allreduce (oneHopAllReduce) only. `ahead`: the queued ops after
  // this one whose data travels in this op's message (a batch); they run
  // next with sentAhead set. `stream`: the receive side's place in a batch
  // the peer sent, kept by the engine from one op to the next.
  const std::vector<const OpDesc*>* ahead = nullptr;
  struct OneHopStream* stream = nullptr;
  PairPathTimes* pairTimes = nullptr;  // pairAllGather (pairAllReduce: its `force` only)
  HugePages* hugePages = nullptr;      // pairAllGather and writesOutbox(): which buffers are on huge pages
  // directAllGather and directBroadcast only: move the bytes through the
  // writers' outboxes (useOutbox()) instead of cross-memory reads.
  bool viaOutbox = false;
  // With viaOutbox: a writer whose buffer is on huge pages publishes its
  // address instead (cross-memory reads allowed, 3+ ranks): reading it pins
  // a page per 2 MiB, and the copy into the outbox is saved. Readers follow
  // what each writer published (writesOutbox(), readPublished()).
  bool directIfHuge = false;
  // directBroadcast at 2 ranks, with directIfHuge: a root on huge pages and
  // in place writes the second half of the reader's output itself
  // (process_vm_writev) while the reader reads the first, where the reader's
  // output is on huge pages too. One copy per byte, on both cores.
  bool rootWritesHalf = false;
};

// Where the receive side of the one-hop exchange stands in a batch from its
// peer: the records not yet consumed; the batch's slot is released with the
// last one.
struct OneHopStream {
  const char* next = nullptr;
  const char* end = nullptr;
  uint32_t remaining = 0;
};

// A one-hop message of at most kHeaderPayloadBytes carries its data in the
// header's `offset` and `totalBytes` fields (unused by collectives), marked
// by `tag` kHeaderPayloadTag.
constexpr uint64_t kHeaderPayloadBytes = 16;
constexpr int32_t kHeaderPayloadTag = -2;
static_assert(offsetof(MsgHeader, totalBytes) == offsetof(MsgHeader, offset) + 8, "offset, totalBytes adjacent");
inline char* headerPayload(MsgHeader* h) { return reinterpret_cast<char*>(h) + offsetof(MsgHeader, offset); }
inline const char* headerPayload(const MsgHeader* h) {
  return reinterpret_cast<const char*>(h) + offsetof(MsgHeader, offset);
}

// A batch message: its header says kBatchStep, `tag` records and `bytes` of
// payload; the payload is, per record, the op's own header (step 0, chunk 0,
// bytes of data) and its data, each padded to 64 bytes.
constexpr uint32_t kBatchStep = 0x10000000u;
inline uint64_t batchRecordBytes(uint64_t dataBytes) { return sizeof(MsgHeader) + (dataBytes + 63) / 64 * 64; }

// Output bytes at or above which streamOutput is used.
constexpr uint64_t kStreamOutputBytes = 8ull << 20;
// The same for an in-place all-gather. Below it streaming lost (6.9-7.1
// against 7.8-8.2 GB/s busbw at 16 MiB, 2 ranks): part of the output stays
// cached from one call to the next.
constexpr uint64_t kStreamInPlaceAllGatherBytes = 32ull << 20;

// Signatures: one function per algorithm file.
Status ringAllReduce(const CollectiveArgs& args);
Status ringReduceScatter(const CollectiveArgs& args);
Status ringAllGather(const CollectiveArgs& args);
Status ringBroadcast(const CollectiveArgs& args);
Status ringReduce(const CollectiveArgs& args);
Status ringBarrier(const CollectiveArgs& args);
Status treeAllReduce(const CollectiveArgs& args);
Status treeBroadcast(const CollectiveArgs& args);
Status treeReduce(const CollectiveArgs& args);
// The largest 2-rank broadcast (bytes) that goes direct where the root's
// buffer is on huge pages (CollectiveArgs::rootWritesHalf).
constexpr uint64_t kPairDirectBroadcastMaxBytes = 32ull << 20;
// Cross-memory-attach variants for when every rank is on this host
// (useDirect()): ring's verification and mismatch semantics, one copy per byte.
Status directAllGather(const CollectiveArgs& args);
Status directBroadcast(const CollectiveArgs& args);
// Two ranks that could go direct: slots or direct per op, by recent times.
Status pairAllGather(const CollectiveArgs& args);
// Two ranks, from kPairAllReduceMinBytes to below kPairAllReduceMaxBytes:
// direct where both ranks' arrays are on huge pages, else the ring.
Status pairAllReduce(const CollectiveArgs& args);
// The 2-rank allreduce through the kernel where every array is on huge
// pages, measured against the ring at its usual pace (docs/PERFORMANCE.md,
// "The 2-rank allreduce through the kernel"): 2 / 4 / 8 MiB in place
// 126-133 / 230-246 / 537-596 us against 148-155 / 270-321 / 594-670; 1 MiB
// no better (92-100 against 80-101), 16 MiB slower (2016-2861 against 1480).
constexpr uint64_t kPairAllReduceMinBytes = 2ull << 20;
constexpr uint64_t kPairAllReduceMaxBytes = 16ull << 20;
// Send our offer to the other rank of two and take its, checked like every
// header and for the same byte count.
Status exchangePairOffers(const OpDesc& op, Transport& t, const PairOffer& mine, PairOffer* theirs);
// Every rank local with an outbox of at least outboxAllReduceBytes() (n >= 2).
Status outboxAllReduce(const CollectiveArgs& args);
// The largest allreduce (bytes of data) that goes through the outboxes: at 4
// ranks on 2 cores it beat the ring at 4 MiB (in place 1427-1630 against
// 1799-1960 us) and lost at 8 MiB (3821-4740 against 3560-4210), where every
// rank's extra copy of its input costs more than the ring's hops. Since a
// waiting rank yields before it sleeps (session 9) the ring wins at 4 MiB
// too: bench, four interleaved pairs, best placement, 943-1025 against
// 1150-1581 us; at 2 MiB 441-1426 against 364-611, equal in the median.
constexpr uint64_t kOutboxAllReduceMaxBytes = 2ull << 20;
uint64_t outboxAllReduceBytes(uint64_t count, size_t elemSize, int n);
// Every rank local with an outbox that holds the whole input (n >= 2).
Status outboxReduceScatter(const CollectiveArgs& args);
// The inputs (bytes, all segments) that go through the outboxes. 4 ranks on
// 2 cores, bench, three interleaved pairs against the ring, best placement
// (us): 512 KiB 116-137 against 105-118; 1 MiB 156-190 against 173-199
// (and 801 in one run); 2 MiB 233-435 against 257-425 (and 1622). 4 MiB,
// 40 queued per repetition, four runs: 775-1088 against 671-778
// (docs/PERFORMANCE.md, "Reduce-scatter through the outboxes").
constexpr uint64_t kOutboxReduceScatterMinBytes = 1ull << 20;
constexpr uint64_t kOutboxReduceScatterMaxBytes = 2ull << 20;

inline MsgHeader stampHeader(const OpDesc& op, uint32_t step, uint32_t chunk, uint64_t bytes) {
  MsgHeader h{};
  h.kind = uint8_t(op.kind);
  h.dtype = uint8_t(op.dtype);
  h.op = uint8_t(op.op);
  h.algorithm = uint8_t(op.algorithm);
  h.seq = op.seq;
  h.count = op.count;
  h.root = op.root;
  h.step = step;
  h.chunk = chunk;
  h.bytes = bytes;
  return h;
}

// The first message of every collective from every neighbour passes through
// here, so ranks that disagree about the call fail instead of computing garbage.
inline Status checkHeader(const OpDesc& op, const MsgHeader& h, int peer, int self, uint32_t step, uint32_t chunk,
                          uint64_t expectBytes) {
  bool reduces = op.kind == OpKind::AllReduce || op.kind == OpKind::ReduceScatter || op.kind == OpKind::Reduce;
  bool rooted = op.kind == OpKind::Broadcast || op.kind == OpKind::Reduce;
  if (h.kind != uint8_t(op.kind) || h.seq != op.seq || h.count != op.count || h.dtype != uint8_t(op.dtype) ||
      (reduces && h.op != uint8_t(op.op)) || (rooted && h.root != op.root) || h.algorithm != uint8_t(op.algorithm)) {
    return Status(StatusCode::CollectiveMismatch,
                  "collective mismatch: rank " + std::to_string(peer) + " called " + describeHeader(h) + " but rank " +
                      std::to_string(self) + " called " + describeOp(op) +
                      (h.algorithm != uint8_t(op.algorithm) ? " (different algorithms)" : ""),
                  {}, peer);
  }
  if (h.step != step || h.chunk != chunk || h.bytes != expectBytes) {
    return Status(StatusCode::Internal,
                  "protocol error from rank " + std::to_string(peer) + " in " + describeOp(op) + ": got step " +
                      std::to_string(h.step) + " chunk " + std::to_string(h.chunk) + " (" + std::to_string(h.bytes) +
                      " bytes), expected step " + std::to_string(step) + " chunk " + std::to_string(chunk) + " (" +
                      std::to_string(expectBytes) + " bytes)",
                  {}, peer);
  }
  return Status::ok();
}

// The ring algorithms' message steps. sendCopy: `bytes` of `src` to `peer`
// as the op's message (step, chunk). sendReduced: `in` (a peer's message)
// reduced with `mine` (elems elements) into that message instead.
// recvChecked: the next message from `peer`, checked to be the op's (step,
// chunk) of `bytes` bytes; the caller releases it.
inline Status sendCopy(const CollectiveArgs& a, int peer, const void* src, uint64_t bytes, uint32_t step,
                       uint64_t chunk);
inline Status sendReduced(const CollectiveArgs& a, int peer, const char* in, const void* mine, uint64_t elems,
                          uint32_t step, uint64_t chunk);
inline Status recvChecked(const CollectiveArgs& a, int peer, uint32_t step, uint64_t chunk, uint64_t bytes,
                          const MsgHeader** h, const char** in);

// Step numbers at or above this mark the verification pass, not data.
constexpr uint32_t kVerifyStep = 0x40000000u;
// Steps of the direct algorithms' messages: kDirectStep carries a
// DirectBuffer, kDirectStep + 1 says "done reading yours".
constexpr uint32_t kDirectStep = 0x20000000u;

// Below this many bytes per published buffer the slots win: a kernel copy
// costs a system call and a page-table walk, and the direct algorithms wait
// for one more message than the ring does.
constexpr uint64_t kDirectMinBytes = 64 * 1024;


// A header-only pass around the ring, n-1 hops, that rooted collectives run
// before their data moves. Without it a rank that only sends (a broadcast
// root) could finish while its peers disagree about the call, and two ranks
// that both believe they are a reduce's root would both wait to receive.
// Every rank compares each header with its own op and stops forwarding on a
// mismatch, so no rank can finish the pass unless every rank agrees: a
// mismatch rejects on every rank (the detecting rank publishes it).
inline Status verifyRing(const CollectiveArgs& a);

// Split `count` elements into `parts` near-equal contiguous segments.
inline uint64_t segmentStart(uint64_t count, int parts, int index) {
  uint64_t base = count / parts, rem = count % parts;
  return uint64_t(index) * base + std::min<uint64_t>(uint64_t(index), rem);
}

inline int mod(int a, int n) { return ((a % n) + n) % n; }

inline uint64_t ceilDiv(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

// Sub-range [begin, end) of chunk `c` of a segment [segBegin, segEnd), chunks
// of `chunkElems`; empty when the segment is shorter.
inline void chunkRange(uint64_t segBegin, uint64_t segEnd, uint64_t c, uint64_t chunkElems, uint64_t* begin,
                       uint64_t* end) {
  uint64_t b = segBegin + c * chunkElems;
  *begin = std::min(b, segEnd);
  *end = std::min(b + chunkElems, segEnd);
}

inline char* elemPtr(void* base, uint64_t index, size_t elemSize) {
  return static_cast<char*>(base) + index * elemSize;
}
inline const char* elemPtr(const void* base, uint64_t index, size_t elemSize) {
  return static_cast<const char*>(base) + index * elemSize;
}

// Copy that tolerates exact self-copies (in-place positions).
inline void copyBytes(void* dst, const void* src, size_t bytes) {
  if (dst != src && bytes) std::memcpy(dst, src, bytes);
}

#if defined(__x86_64__)
// The SSE2 copy loop copyChunk and copyToOutput share: 64 bytes per round
// through four 16-byte registers, plain (Stream = false) or non-temporal
// stores (true, which need `d` 16-byte aligned and fence before returning:
// streaming stores are weakly ordered), then memcpy for the tail.
template <bool Stream>
inline void copyLines64(char* d, const char* s, size_t bytes) {
  const size_t body = bytes & ~size_t(63);
  for (size_t i = 0; i < body; i += 64) {
    __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i));
    __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 16));
    __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 32));
    __m128i e = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i + 48));
    if constexpr (Stream) {
      _mm_stream_si128(reinterpret_cast<__m128i*>(d + i), a);
      _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 16), b);
      _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 32), c);
      _mm_stream_si128(reinterpret_cast<__m128i*>(d + i + 48), e);
    } else {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i), a);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i + 16), b);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i + 32), c);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i + 48), e);
    }
  }
  if constexpr (Stream) _mm_sfence();
  std::memcpy(d + body, s + body, bytes - body);
}
#endif

// copyBytes for the 2-rank all-gather's slot-sized copies: an explicit vector
// loop instead of memcpy's `rep movsb` (glibc's choice for 8 KiB to L2-sized
// copies on AMD). It was 13 % faster at 16 MiB and fewer runs fell into the
// mode where the exchange moves at a fifth of its speed (docs/PERFORMANCE.md,
// "Large messages (session 4)"). A broadcast root reading its input from
// memory into slots was faster with memcpy (16.9-18.8 against 13.8-16.7 GB/s).
inline void copyChunk(void* dst, const void* src, size_t bytes) {
#if defined(__x86_64__)
  if (dst != src && bytes >= 4096) {
    copyLines64<false>(static_cast<char*>(dst), static_cast<const char*>(src), bytes);
    return;
  }
#endif
  copyBytes(dst, src, bytes);
}

// copyBytes for final results: non-temporal stores when `stream` (see
// CollectiveArgs::streamOutput). SSE2 is part of x86-64, so no dispatch.
inline void copyToOutput(void* dst, const void* src, size_t bytes, bool stream) {
#if defined(__x86_64__)
  if (stream && dst != src && bytes >= 256) {
    char* d = static_cast<char*>(dst);
    const char* s = static_cast<const char*>(src);
    size_t head = (16 - (reinterpret_cast<uintptr_t>(d) & 15)) & 15;
    std::memcpy(d, s, head);
    d += head;
    s += head;
    bytes -= head;
    copyLines64<true>(d, s, bytes);
    return;
  }
#endif
  copyBytes(dst, src, bytes);
}

// A bulk result chunk: streamed (copyToOutput) or through copyChunk.
inline void copyChunkToOutput(void* dst, const void* src, size_t bytes, bool stream) {
  if (stream) copyToOutput(dst, src, bytes, true);
  else copyChunk(dst, src, bytes);
}

// The 2-rank allreduce that fits one message: both ranks send their whole
// buffer and reduce locally (one hop). The only op an inline attempt runs.
inline bool oneHopAllReduce(const Transport& t, const OpDesc& op, size_t chunkElems) {
  const uint64_t bytes = op.count * dtypeSize(op.dtype);
  return t.size() == 2 && op.kind == OpKind::AllReduce && op.algorithm == Algorithm::Ring && bytes <= t.slotBytes() &&
         bytes <= chunkElems * dtypeSize(op.dtype);
}

inline Status verifyRing(const CollectiveArgs& a) {
  const OpDesc& op = *a.op;
  Transport& t = *a.transport;
  const int n = t.size(), r = t.rank();
  if (n == 1) return Status::ok();
  const int right = mod(r + 1, n), left = mod(r - 1, n);
  char* slot;
  RT_CHECK(t.acquireSend(right, &slot));
  t.commitSend(right, stampHeader(op, kVerifyStep, 0, 0));
  for (int s = 0; s < n - 1; s++) {
    const MsgHeader* h;
    const char* data;
    RT_CHECK(t.acquireRecv(left, &h, &data));
    RT_CHECK(checkHeader(op, *h, left, r, kVerifyStep + uint32_t(s), 0, 0));
    t.releaseRecv(left);
    if (s < n - 2) {
      RT_CHECK(t.acquireSend(right, &slot));
      t.commitSend(right, stampHeader(op, kVerifyStep + uint32_t(s + 1), 0, 0));
    }
  }
  return Status::ok();
}

// Whether a collective publishing `bytes` per buffer runs direct: at least
// `minBytes`, and every peer on this host and readable. Every rank decides
// alike (the same count and threshold, and crossMemoryOk flags all set before
// the first op).
inline bool useDirect(Transport& t, uint64_t bytes, uint64_t minBytes = kDirectMinBytes) {
  if (bytes < minBytes || t.size() < 2) return false;
  for (int p = 0; p < t.size(); p++)
    if (p != t.rank() && t.directPid(p) < 0) return false;
  return true;
}

// Whether a collective publishing `bytes` per buffer goes through the
// outboxes: at least `minBytes`, at most `maxBytes` and (unless it `wraps`:
// streams more than an outbox through it) an outbox, and every peer on this
// host. The writer copies its buffer into its outbox once and each reader
// copies it out with plain loads: two user-space copies per byte instead of
// one kernel copy, but no page pinning, which took twice the copy's time at
// cached sizes (4 ranks, 1 MiB broadcast: follow_page_pte, __get_user_pages
// and the page-table lock 23 % of all samples, _copy_to_iter 11 %). Every
// rank decides alike: the same count, outbox size (the segment's) and set of
// local peers. Needs no process_vm_readv permission.
inline bool useOutbox(Transport& t, uint64_t bytes, uint64_t minBytes, uint64_t maxBytes, bool wraps = false) {
  if (bytes < minBytes || bytes > maxBytes || (!wraps && bytes > t.outboxBytes()) || t.outboxBytes() == 0 ||
      t.size() < 2)
    return false;
  for (int p = 0; p < t.size(); p++)
    if (p != t.rank() && t.outbox(p) == nullptr) return false;
  return true;
}

// Publish one of our buffers to peer `p` (a kDirectStep message).
inline Status publishDirect(const OpDesc& op, Transport& t, int p, const void* address, uint64_t bytes,
                            uint64_t rootWritesFrom = 0) {
  const DirectBuffer mine{reinterpret_cast<uint64_t>(address), bytes, rootWritesFrom};
  char* slot;
  RT_CHECK(t.acquireSend(p, &slot));
  std::memcpy(slot, &mine, sizeof mine);
  t.commitSend(p, stampHeader(op, kDirectStep, 0, sizeof mine));
  return Status::ok();
}

// Take peer `p`'s published buffer (its DirectBuffer message) and check
// that it publishes `bytes`.
inline Status receivePublished(const OpDesc& op, Transport& t, int p, uint64_t bytes, DirectBuffer* theirs) {
  const MsgHeader* h;
  const char* in;
  RT_CHECK(t.acquireRecv(p, &h, &in));
  RT_CHECK(checkHeader(op, *h, p, t.rank(), kDirectStep, 0, sizeof(DirectBuffer)));
  std::memcpy(theirs, in, sizeof *theirs);
  t.releaseRecv(p);
  if (theirs->bytes != bytes)
    return Status(StatusCode::Internal, "protocol error from rank " + std::to_string(p) + " in " + describeOp(op) +
                                            ": it published " + std::to_string(theirs->bytes) + " bytes, expected " +
                                            std::to_string(bytes), {}, p);
  return Status::ok();
}

// Pieces in which a writer fills its outbox: readers copy each piece out
// while the writer copies the next in, so a broadcast's readers start after
// one piece instead of after the whole buffer.
constexpr uint64_t kOutboxPieceBytes = 256 * 1024;

// Wait until `word` (peer `p`'s outboxFilled or outboxTaken) is at least `atLeast`.
inline Status awaitAtLeast(Transport& t, int p, const std::atomic<uint64_t>& word, uint64_t atLeast) {
  uint64_t value = word.load(std::memory_order_acquire);
  return value >= atLeast ? Status::ok() : t.awaitAbove(p, word, atLeast - 1, &value);
}

// Tell peer `p` we are done reading what it published (awaitDone's word).
inline Status sayDone(const OpDesc& op, Transport& t, int p) {
  char* slot;
  RT_CHECK(t.acquireSend(p, &slot));
  t.commitSend(p, stampHeader(op, kDirectStep + 1, 0, 0));
  return Status::ok();
}

// Before publishing through the outbox: nothing of this op is there yet,
// and we have taken nothing from anyone's. Peers look at these words only
// after our publish message, whose commit orders these stores before it.
inline void resetOutbox(Transport& t) {
  t.outboxFilled(t.rank()).store(0, std::memory_order_relaxed);
  t.outboxTaken(t.rank()).store(0, std::memory_order_relaxed);
}

// Put `bytes` of `src` in our outbox for this op's readers, piece by piece,
// each piece announced in outboxFilled() and rung to the readers that sleep
// on it. The caller has published (publishDirect, address 0) before, so the
// readers are already copying behind us; and every reader of our last op
// said it was done, so the outbox is ours to overwrite. Bytes [skipBegin,
// skipEnd) no reader wants: they count as filled uncopied.
//
// Data larger than the outbox wraps around it: a piece may overwrite only
// what every reader has taken (outboxTaken), and `beforeWrap()` runs once
// before the first such wait. It must make those words this op's: receive
// every reader's publish, which each sends after its resetOutbox().
template <class BeforeWrap>
inline Status fillOutbox(Transport& t, const void* src, uint64_t bytes, BeforeWrap beforeWrap, uint64_t skipBegin = 0,
                         uint64_t skipEnd = 0) {
  const int n = t.size(), r = t.rank();
  std::atomic<uint64_t>& filled = t.outboxFilled(r);
  char* box = t.outbox(r);
  const uint64_t cap = t.outboxBytes();
  bool wrapped = false;
  for (uint64_t off = 0; off < bytes;) {
    const uint64_t at = off % cap;
    uint64_t len = std::min(std::min(kOutboxPieceBytes, bytes - off), cap - at);
    if (off >= skipBegin && off < skipEnd) {
      len = skipEnd - off;
    } else {
      if (off < skipBegin) len = std::min(len, skipBegin - off);
      if (off + len > cap) {
        if (!wrapped) RT_CHECK(beforeWrap());
        wrapped = true;
        for (int k = 1; k < n; k++) {
          const int p = mod(r + k, n);
          RT_CHECK(awaitAtLeast(t, p, t.outboxTaken(p), off + len - cap));
        }
      }
      copyChunk(box + at, static_cast<const char*>(src) + off, len);
    }
    off += len;
    filled.store(off, std::memory_order_release);
    for (int k = 1; k < n; k++) t.notify(mod(r + k, n));
  }
  return Status::ok();
}

// fillOutbox for data that fits the outbox (never wraps).
inline void fillOutbox(Transport& t, const void* src, uint64_t bytes, uint64_t skipBegin = 0, uint64_t skipEnd = 0) {
  (void)fillOutbox(t, src, bytes, [] { return Status::ok(); }, skipBegin, skipEnd);
}

// The outbox allreduce's and reduce-scatter's first step: publish through our
// outbox (address 0), copy the op's whole input (`bytes`, which fit the
// outbox) into it but for [skipBegin, skipEnd), which only we read, and take
// every peer's publish of as many bytes.
inline Status shareInputThroughOutbox(const OpDesc& op, Transport& t, uint64_t bytes, uint64_t skipBegin,
                                      uint64_t skipEnd) {
  const int n = t.size(), r = t.rank();
  resetOutbox(t);
  for (int k = 1; k < n; k++) RT_CHECK(publishDirect(op, t, mod(r + k, n), nullptr, bytes));
  fillOutbox(t, op.input, bytes, skipBegin, skipEnd);
  DirectBuffer theirs;
  for (int k = 1; k < n; k++) RT_CHECK(receivePublished(op, t, mod(r + k, n), bytes, &theirs));
  return Status::ok();
}

// Wait until every peer's outbox holds this op's bytes up to `end`.
inline Status awaitOutboxesFilled(Transport& t, uint64_t end) {
  for (int q = 0; q < t.size(); q++)
    if (q != t.rank()) RT_CHECK(awaitAtLeast(t, q, t.outboxFilled(q), end));
  return Status::ok();
}

// Copy `bytes` of peer `p`'s outbox into `dst` as `p` fills it; if they
// wrap around it, say how far we are (outboxTaken) after every copy.
inline Status readOutbox(const CollectiveArgs& a, int p, uint64_t bytes, void* dst) {
  Transport& t = *a.transport;
  const char* box = t.outbox(p);
  const uint64_t cap = t.outboxBytes();
  std::atomic<uint64_t>& filled = t.outboxFilled(p);
  std::atomic<uint64_t>& taken = t.outboxTaken(t.rank());
  uint64_t done = 0;
  while (done < bytes) {
    uint64_t avail = filled.load(std::memory_order_acquire);
    if (avail <= done) RT_CHECK(t.awaitAbove(p, filled, done, &avail));
    avail = std::min(avail, bytes);
    while (done < avail) {
      const uint64_t at = done % cap, len = std::min(avail - done, cap - at);
      copyChunkToOutput(static_cast<char*>(dst) + done, box + at, len, a.streamOutput);
      done += len;
    }
    if (bytes > cap) {
      taken.store(done, std::memory_order_release);
      t.notify(p);
    }
  }
  return Status::ok();
}

// Whether this rank, as a writer of `bytes` at `mine`, goes through its
// outbox (true) or publishes `mine` for cross-memory reads (false).
inline bool writesOutbox(const CollectiveArgs& a, const void* mine, uint64_t bytes) {
  return a.viaOutbox && !(a.directIfHuge && a.hugePages && a.hugePages->covers(mine, bytes));
}

// Read the first `bytes` of what peer `p` published (`theirs`, received)
// into `dst`: with one cross-memory copy, or from `p`'s outbox when
// `a.viaOutbox` and `p` published no address.
inline Status readReceived(const CollectiveArgs& a, int p, const DirectBuffer& theirs, uint64_t bytes, void* dst) {
  Transport& t = *a.transport;
  if (a.viaOutbox && theirs.address == 0) RT_CHECK(readOutbox(a, p, bytes, dst));
  else RT_CHECK(readCrossMemory(t.directPid(p), p, theirs.address, dst, bytes));
  t.countDirect(p, 0, bytes);
  return Status::ok();
}

// Take peer `p`'s published buffer, check that it publishes `bytes`, read
// them into `dst` (readReceived), and tell `p` we are done with it. Saying
// so at once, not after every read, lets `p` find our word waiting when it
// gets to it instead of sleeping until it comes.
inline Status readPublished(const CollectiveArgs& a, int p, uint64_t bytes, void* dst) {
  DirectBuffer theirs;
  RT_CHECK(receivePublished(*a.op, *a.transport, p, bytes, &theirs));
  RT_CHECK(readReceived(a, p, theirs, bytes, dst));
  return sayDone(*a.op, *a.transport, p);
}

// Wait until peer `p` is done reading our published buffer (which must not
// change or vanish before). `bytes`: that buffer, for stats().
inline Status awaitDone(const OpDesc& op, Transport& t, int p, uint64_t bytes) {
  const MsgHeader* h;
  const char* in;
  RT_CHECK(t.acquireRecv(p, &h, &in));
  RT_CHECK(checkHeader(op, *h, p, t.rank(), kDirectStep + 1, 0, 0));
  t.releaseRecv(p);
  t.countDirect(p, bytes, 0);
  return Status::ok();
}

inline Status sendCopy(const CollectiveArgs& a, int peer, const void* src, uint64_t bytes, uint32_t step,
                       uint64_t chunk) {
  char* slot;
  RT_CHECK(a.transport->acquireSend(peer, &slot));
  copyBytes(slot, src, bytes);
  a.transport->commitSend(peer, stampHeader(*a.op, step, uint32_t(chunk), bytes));
  return Status::ok();
}

inline Status sendReduced(const CollectiveArgs& a, int peer, const char* in, const void* mine, uint64_t elems,
                          uint32_t step, uint64_t chunk) {
  const OpDesc& op = *a.op;
  char* slot;
  RT_CHECK(a.transport->acquireSend(peer, &slot));
  reduce(slot, in, mine, elems, op.dtype, op.op);
  a.transport->commitSend(peer, stampHeader(op, step, uint32_t(chunk), elems * dtypeSize(op.dtype)));
  return Status::ok();
}

inline Status recvChecked(const CollectiveArgs& a, int peer, uint32_t step, uint64_t chunk, uint64_t bytes,
                          const MsgHeader** h, const char** in) {
  RT_CHECK(a.transport->acquireRecv(peer, h, in));
  return checkHeader(*a.op, **h, peer, a.transport->rank(), step, uint32_t(chunk), bytes);
}

}  // namespace ringtree
