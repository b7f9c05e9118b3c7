#include "cpu/P2pEngine.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "cpu/Engine.h"

namespace ringtree {

constexpr int64_t kMaxSleepNs = 100 * 1000000LL;

P2pEngine::P2pEngine(Engine* engine, PeerTransport* transport, Sink sink)
    : engine_(engine), transport_(transport), sink_(std::move(sink)), rank_(transport->rank()),
      size_(transport->size()), peers_(size_), sendSeq_(size_, 0), bufferCap_(kDefaultBufferBytes) {
  if (const char* v = getenv("RINGTREE_P2P_BUFFER_BYTES"); v && *v) bufferCap_ = strtoull(v, nullptr, 10);
}

P2pEngine::~P2pEngine() { stop(); }

void P2pEngine::start() {
  thread_ = std::thread([this] { loop(); });
}

void P2pEngine::post(const std::vector<std::pair<uint64_t, OpDesc>>& ops) {
  {
    std::lock_guard<std::mutex> lk(inboxMutex_);
    inbox_.insert(inbox_.end(), ops.begin(), ops.end());
  }
  transport_->wakeSelf(kP2pClass);
}

void P2pEngine::stop() {
  if (stop_.exchange(true)) {
    if (thread_.joinable()) thread_.join();
    return;
  }
  transport_->wakeSelf(kP2pClass);
  if (thread_.joinable()) thread_.join();
  // Whatever the thread had not finished, and whatever never reached it.
  Status s(StatusCode::Aborted, "the communicator was destroyed while the operation was pending");
  failAll(s);
  std::vector<std::pair<uint64_t, OpDesc>> rest;
  {
    std::lock_guard<std::mutex> lk(inboxMutex_);
    rest.swap(inbox_);
  }
  for (auto& item : rest) sink_(item.first, s);
}

void P2pEngine::loop() {
  try {
    while (!stop_.load(std::memory_order_acquire)) {
      uint32_t seen = transport_->doorbell(kP2pClass);
      bool moved = progress();
      if (stop_.load(std::memory_order_acquire)) return;
      if (!moved) {
        int64_t nextDeadline = checkDeadlines();
        transport_->sleep(kP2pClass, seen, std::min(nextDeadline, kMaxSleepNs));
      }
    }
  } catch (const std::exception& e) {
    Status s(StatusCode::Internal, std::string("the point-to-point thread failed: ") + e.what());
    engine_->fail(s, true);
    failAll(s);
  }
}

bool P2pEngine::progress() {
  std::vector<std::pair<uint64_t, OpDesc>> fresh;
  {
    std::lock_guard<std::mutex> lk(inboxMutex_);
    fresh.swap(inbox_);
  }
  // Only ask while work is pending: a failure or a peer leaving does not
  // concern an idle point-to-point engine.
  Status interrupted = (fresh.empty() && all_.empty()) ? Status::ok() : engine_->checkInterrupts(false);
  for (auto& item : fresh) {
    auto p = std::make_unique<Pending>();
    p->id = item.first;
    p->desc = item.second;
    p->deadline = Deadline::afterMs(item.second.timeoutMs);
    Pending* raw = p.get();
    all_.push_back(std::move(p));
    if (!interrupted.isOk()) {
      finish(raw, interrupted);
      continue;
    }
    accept(raw);
  }
  if (!interrupted.isOk()) {
    failAll(interrupted);
    return false;
  }
  bool moved = !fresh.empty();
  for (int peer = 0; peer < size_; peer++) {
    if (peer == rank_) continue;
    moved |= pumpSends(peer);
    moved |= pumpRecvs(peer);
  }
  return moved;
}

void P2pEngine::accept(Pending* op) {
  const int peer = op->desc.peer;
  if (op->desc.kind == OpKind::Send) {
    if (peer == rank_) {
      // A send to ourselves is an unexpected message that arrived whole.
      auto u = std::make_unique<Unexpected>();
      u->tag = op->desc.tag;
      u->total = op->desc.inputBytes;
      u->got = u->total;
      u->data.assign(static_cast<const char*>(op->desc.input), static_cast<const char*>(op->desc.input) + u->total);
      peers_[peer].unexpected.push_back(std::move(u));
      finish(op, Status::ok());
    } else {
      peers_[peer].sends.push_back(op);
    }
  } else {
    peers_[peer].recvs.push_back(op);
  }
  // A new receive may match a message that is already here.
  PeerQueues& q = peers_[peer];
  for (auto it = q.recvs.begin(); it != q.recvs.end();) {
    Pending* recv = *it;
    if (recv->bound) {
      ++it;
      continue;
    }
    auto u = std::find_if(q.unexpected.begin(), q.unexpected.end(), [&](const std::unique_ptr<Unexpected>& m) {
      return m->tag == recv->desc.tag && m->boundRecv == nullptr;
    });
    if (u == q.unexpected.end()) {
      ++it;
      continue;
    }
    Unexpected* m = u->get();
    if (m->total != recv->desc.outputBytes) {
      Status s = sizeMismatch(*recv, m->total, peer);
      engine_->fail(s, true);
      ++it;
      continue;  // failAll on the next pass rejects everything
    }
    if (m->got == m->total) {
      deliver(recv, m);
      dropUnexpected(q, m);
      it = q.recvs.erase(it);
    } else {
      m->boundRecv = recv;
      recv->bound = m;
      ++it;
    }
  }
}

bool P2pEngine::pumpSends(int peer) {
  PeerQueues& q = peers_[peer];
  bool moved = false;
  while (!q.sends.empty()) {
    Pending* op = q.sends.front();
    char* slot = transport_->trySendSlot(peer, kP2pClass);
    if (!slot) break;
    const uint64_t total = op->desc.inputBytes;
    const uint64_t n = std::min<uint64_t>(total - op->done, transport_->slotBytes());
    if (n) std::memcpy(slot, static_cast<const char*>(op->desc.input) + op->done, n);
    MsgHeader h{};
    h.kind = uint8_t(OpKind::Send);
    h.tag = op->desc.tag;
    h.seq = sendSeq_[peer];
    h.bytes = n;
    h.offset = op->done;
    h.totalBytes = total;
    transport_->commit(peer, kP2pClass, h);
    op->done += n;
    moved = true;
    if (op->done == total) {
      sendSeq_[peer]++;
      q.sends.pop_front();
      finish(op, Status::ok());
    }
  }
  return moved;
}

bool P2pEngine::pumpRecvs(int peer) {
  PeerQueues& q = peers_[peer];
  Incoming& in = q.incoming;
  bool moved = false;
  for (;;) {
    const char* data;
    const MsgHeader* h = transport_->tryRecvSlot(peer, kP2pClass, &data);
    if (!h) break;
    if (!in.active) {
      // First fragment of a new message: the oldest posted recv with its tag.
      auto it = std::find_if(q.recvs.begin(), q.recvs.end(),
                             [&](Pending* r) { return r->desc.tag == h->tag && r->bound == nullptr; });
      // None, and no room to buffer it: it stays in the channel (and the
      // messages behind it: they arrive in order) until its recv is posted.
      // Only from a rank on this host: a TCP peer's control frames (its
      // goodbye, a failure) follow its messages on this connection, and
      // must not wait behind one.
      if (it == q.recvs.end() && transport_->isLocal(peer) && bufferedBytes_ + h->totalBytes > bufferCap_) break;
      in = Incoming{};
      in.active = true;
      in.total = h->totalBytes;
      if (it != q.recvs.end() && (*it)->desc.outputBytes != h->totalBytes) {
        Status s = sizeMismatch(**it, h->totalBytes, peer);
        transport_->release(peer, kP2pClass);
        engine_->fail(s, true);
        return true;
      }
      if (it != q.recvs.end()) {
        in.recv = *it;
        q.recvs.erase(it);
      } else {
        auto u = std::make_unique<Unexpected>();
        u->tag = h->tag;
        u->total = h->totalBytes;
        u->data.resize(h->totalBytes);
        u->counted = true;
        bufferedBytes_ += h->totalBytes;
        in.unexpected = u.get();
        q.unexpected.push_back(std::move(u));
      }
    }
    moved = true;
    if (h->offset != in.got || in.got + h->bytes > in.total) {
      transport_->release(peer, kP2pClass);
      engine_->fail(Status(StatusCode::Internal, "point-to-point protocol error from rank " + std::to_string(peer)),
                    true);
      return true;
    }
    char* dst = in.recv ? static_cast<char*>(in.recv->desc.output) : in.unexpected->data.data();
    if (h->bytes) std::memcpy(dst + in.got, data, h->bytes);
    in.got += h->bytes;
    if (in.unexpected) in.unexpected->got = in.got;
    transport_->release(peer, kP2pClass);
    if (in.got == in.total) {
      if (in.recv) {
        finish(in.recv, Status::ok());
      } else if (Pending* r = in.unexpected->boundRecv) {
        deliver(r, in.unexpected);
        q.recvs.remove(r);
        dropUnexpected(q, in.unexpected);
      }
      in = Incoming{};
    }
  }
  return moved;
}

void P2pEngine::deliver(Pending* recv, Unexpected* u) {
  if (u->total) std::memcpy(recv->desc.output, u->data.data(), u->total);
  finish(recv, Status::ok());
}

void P2pEngine::dropUnexpected(PeerQueues& q, const Unexpected* u) {
  if (u->counted) bufferedBytes_ -= u->total;
  q.unexpected.remove_if([&](const std::unique_ptr<Unexpected>& m) { return m.get() == u; });
}

void P2pEngine::finish(Pending* op, const Status& s) {
  engine_->recordP2p(op->desc.kind, s.isOk());
  sink_(op->id, s);
  all_.remove_if([&](const std::unique_ptr<Pending>& p) { return p.get() == op; });
}

void P2pEngine::failAll(const Status& s) {
  for (auto& q : peers_) {
    q.sends.clear();
    q.recvs.clear();
    q.unexpected.clear();
    q.incoming = Incoming{};
  }
  bufferedBytes_ = 0;
  auto pending = std::move(all_);
  all_.clear();
  for (auto& p : pending) {
    engine_->recordP2p(p->desc.kind, false);
    sink_(p->id, s);
  }
}

Status P2pEngine::sizeMismatch(const Pending& recv, uint64_t total, int peer) {
  return Status(StatusCode::CollectiveMismatch,
                "recv from rank " + std::to_string(peer) + " (tag " + std::to_string(recv.desc.tag) + ") on rank " +
                    std::to_string(rank_) + " expected " + std::to_string(recv.desc.outputBytes) +
                    " bytes but rank " + std::to_string(peer) + " sent " + std::to_string(total) + " bytes",
                "Match every send with a recv of the same byte length and tag.", peer);
}

int64_t P2pEngine::checkDeadlines() {
  int64_t next = kMaxSleepNs;
  for (auto& p : all_) {
    const int peer = p->desc.peer;
    if (peer != rank_ && engine_->peerDestroyed(peer)) {
      engine_->fail(Status(StatusCode::PeerLost,
                           "rank " + std::to_string(peer) + " left the communicator while rank " +
                               std::to_string(rank_) + " still had a " + opKindName(p->desc.kind) + " with it pending",
                           "Make both sides of every send/recv finish before destroy().", peer),
                    true);
      return 0;
    }
    if (p->deadline.expired()) {
      const bool isSend = p->desc.kind == OpKind::Send;
      Status s(StatusCode::Timeout,
               std::string(isSend ? "send to" : "recv from") + " rank " + std::to_string(p->desc.peer) + " (tag " +
                   std::to_string(p->desc.tag) + ", " + std::to_string(isSend ? p->desc.inputBytes : p->desc.outputBytes) +
                   " bytes) timed out after " + std::to_string(p->desc.timeoutMs) + " ms on rank " +
                   std::to_string(rank_),
               std::string("Rank ") + std::to_string(p->desc.peer) + " never posted the matching " +
                   (isSend ? "recv" : "send") + "; check the tags and the order of calls, or raise timeoutMs" +
                   (isSend ? " (or, where rank " + std::to_string(p->desc.peer) +
                                 " receives late on purpose, its RINGTREE_P2P_BUFFER_BYTES)."
                           : "."),
               p->desc.peer);
      engine_->fail(s, true);
      return 0;  // the next progress() pass rejects everything
    }
    next = std::min(next, p->deadline.remainingNs());
  }
  return std::max<int64_t>(next, 1000);
}

}  // namespace ringtree
