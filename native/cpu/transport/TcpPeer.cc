#include "cpu/transport/TcpPeer.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "cpu/Clock.h"

namespace ringtree {

namespace {

constexpr uint32_t kFrameMagic = 0x52544650;  // "RTFP"
enum FrameType : uint16_t { kData = 1, kHeartbeat = 2, kFailure = 3, kGoodbye = 4 };

struct FrameHead {
  uint32_t magic;
  uint16_t type;
  uint16_t reserved;
  uint32_t length;  // bytes after this head
  uint32_t pad;
};
static_assert(sizeof(FrameHead) == 16, "frame head is 16 bytes");

void tuneSocket(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  // A host that vanished (power, network) is noticed by keepalive in ~11 s
  // even when no heartbeat would be read; heartbeats usually notice first.
  int idle = 5, interval = 2, count = 3;
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

void putU32(std::string& s, uint32_t v) { s.append(reinterpret_cast<const char*>(&v), 4); }

}  // namespace

TcpPeer::TcpPeer(int selfRank, int peerRank, int fd0, int fd1, uint32_t slots, uint64_t slotBytes, Hooks hooks)
    : selfRank_(selfRank), peerRank_(peerRank), hooks_(std::move(hooks)), lastHeardNs_(monotonicNs()) {
  fd_[kCollectiveClass] = fd0;
  fd_[kP2pClass] = fd1;
  for (int c = 0; c < kChannelClasses; c++) {
    tuneSocket(fd_[c]);
    send_[c] = std::make_unique<SlotRing>(slots, slotBytes);
    recv_[c] = std::make_unique<SlotRing>(slots, slotBytes);
  }
}

TcpPeer::~TcpPeer() { stop(false); }

void TcpPeer::start() {
  for (int c = 0; c < kChannelClasses; c++) {
    threads_.emplace_back([this, c] { senderLoop(c); });
    threads_.emplace_back([this, c] { receiverLoop(c); });
  }
}

void TcpPeer::stop(bool graceful) {
  if (graceful && !stopping_.load() && !closed_.load()) {
    queueControl(kGoodbye, {});
    // Give the goodbye a moment to leave; a peer that never reads it will
    // see the connection close instead.
    std::unique_lock<std::mutex> lk(mutex_);
    senderCv_[kP2pClass].wait_for(lk, std::chrono::milliseconds(500), [&] { return control_.empty() || closed_.load(); });
  }
  if (stopping_.exchange(true)) return;
  for (int c = 0; c < kChannelClasses; c++) {
    if (fd_[c] >= 0) shutdown(fd_[c], SHUT_RDWR);
  }
  {
    std::lock_guard<std::mutex> lk(mutex_);
    for (int c = 0; c < kChannelClasses; c++) {
      senderCv_[c].notify_all();
      receiverCv_[c].notify_all();
    }
  }
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
  for (int c = 0; c < kChannelClasses; c++) {
    if (fd_[c] >= 0) close(fd_[c]);
    fd_[c] = -1;
  }
}

void TcpPeer::commit(int cls, const MsgHeader& header) {
  send_[cls]->commit(header);
  { std::lock_guard<std::mutex> lk(mutex_); }
  senderCv_[cls].notify_one();
}

void TcpPeer::release(int cls) {
  recv_[cls]->release();
  { std::lock_guard<std::mutex> lk(mutex_); }
  receiverCv_[cls].notify_one();
}

void TcpPeer::queueControl(uint16_t type, std::string payload) {
  {
    std::lock_guard<std::mutex> lk(mutex_);
    control_.emplace_back(type, std::move(payload));
  }
  senderCv_[kP2pClass].notify_all();
}

void TcpPeer::sendHeartbeat(uint64_t collSeq, bool inOp) {
  std::string p(reinterpret_cast<const char*>(&collSeq), 8);
  uint64_t in = inOp ? 1 : 0;
  p.append(reinterpret_cast<const char*>(&in), 8);
  queueControl(kHeartbeat, std::move(p));
}

void TcpPeer::sendFailure(const Status& status, int originRank) {
  std::string p;
  putU32(p, uint32_t(status.code()));
  putU32(p, uint32_t(originRank));
  putU32(p, uint32_t(status.peer()));
  putU32(p, uint32_t(status.message().size()));
  putU32(p, uint32_t(status.remedy().size()));
  p += status.message();
  p += status.remedy();
  queueControl(kFailure, std::move(p));
}

bool TcpPeer::writeAll(int fd, const void* data, size_t bytes) {
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    ssize_t n = ::send(fd, p, bytes, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    bytes -= size_t(n);
  }
  return true;
}

bool TcpPeer::readAll(int fd, void* data, size_t bytes) {
  char* p = static_cast<char*>(data);
  while (bytes > 0) {
    ssize_t n = ::recv(fd, p, bytes, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    bytes -= size_t(n);
  }
  return true;
}

// How long a closed data connection waits for the goodbye that may still be
// on its way over the control connection.
constexpr auto kGoodbyeGrace = std::chrono::milliseconds(500);

void TcpPeer::connectionLost(int cls, const std::string& why) {
  if (cls != kP2pClass) {
    // A peer that leaves gracefully sends its goodbye on the control
    // (point-to-point) connection and then closes both; the two sockets are
    // read by different threads, so this one may see its end first. Give
    // the goodbye a moment before calling the peer lost; a peer that died
    // ends the control connection too, which ends the wait at once.
    const auto until = std::chrono::steady_clock::now() + kGoodbyeGrace;
    while (!bye_.load(std::memory_order_acquire) && !stopping_.load() &&
           !controlLost_.load(std::memory_order_acquire) && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  } else {
    controlLost_.store(true, std::memory_order_release);
  }
  closed_.store(true, std::memory_order_release);
  { std::lock_guard<std::mutex> lk(mutex_); }
  for (int c = 0; c < kChannelClasses; c++) senderCv_[c].notify_all();
  if (stopping_.load() || bye_.load()) return;
  hooks_.failed(Status(StatusCode::PeerLost,
                       "the connection to rank " + std::to_string(peerRank_) + " broke (" + why +
                           "): the rank died or its host is unreachable",
                       "Check rank " + std::to_string(peerRank_) +
                           "'s own output and its host; restart the job (ringtree launch --max-restarts).",
                       peerRank_));
}

void TcpPeer::senderLoop(int cls) {
  try {
    for (;;) {
      std::pair<uint16_t, std::string> control;
      bool haveControl = false;
      {
        std::unique_lock<std::mutex> lk(mutex_);
        senderCv_[cls].wait(lk, [&] {
          return stopping_.load() || closed_.load() || !send_[cls]->empty() ||
                 (cls == kP2pClass && !control_.empty());
        });
        if (stopping_.load() || closed_.load()) return;
        if (cls == kP2pClass && !control_.empty()) {
          control = std::move(control_.front());
          haveControl = true;
        }
      }
      if (haveControl) {
        FrameHead fh{kFrameMagic, control.first, 0, uint32_t(control.second.size()), 0};
        bool ok = writeAll(fd_[cls], &fh, sizeof fh) && writeAll(fd_[cls], control.second.data(), control.second.size());
        {
          std::lock_guard<std::mutex> lk(mutex_);
          control_.pop_front();
        }
        senderCv_[cls].notify_all();  // stop() waits for the goodbye to leave
        if (!ok) return connectionLost(cls, "send failed");
        continue;
      }
      const char* payload;
      const MsgHeader* h = send_[cls]->tryRecv(&payload);
      if (!h) continue;
      FrameHead fh{kFrameMagic, kData, uint16_t(cls), uint32_t(sizeof(MsgHeader) + h->bytes), 0};
      if (!writeAll(fd_[cls], &fh, sizeof fh) || !writeAll(fd_[cls], h, sizeof(MsgHeader)) ||
          !writeAll(fd_[cls], payload, h->bytes)) {
        return connectionLost(cls, "send failed");
      }
      send_[cls]->release();
      hooks_.wake(cls);  // a free send slot for our producer
    }
  } catch (...) {
    connectionLost(cls, "sender thread exception");
  }
}

void TcpPeer::receiverLoop(int cls) {
  try {
    for (;;) {
      FrameHead fh;
      if (!readAll(fd_[cls], &fh, sizeof fh)) return connectionLost(cls, "connection closed");
      if (fh.magic != kFrameMagic) return connectionLost(cls, "corrupt frame");
      lastHeardNs_.store(monotonicNs(), std::memory_order_relaxed);
      if (fh.type == kData) {
        {
          std::unique_lock<std::mutex> lk(mutex_);
          receiverCv_[cls].wait(lk, [&] { return stopping_.load() || !recv_[cls]->full(); });
          if (stopping_.load()) return;
        }
        MsgHeader* h = recv_[cls]->producerHeader();
        if (fh.length < sizeof(MsgHeader) || !readAll(fd_[cls], h, sizeof(MsgHeader)))
          return connectionLost(cls, "connection closed");
        if (h->bytes > recv_[cls]->slotBytes() || fh.length != sizeof(MsgHeader) + h->bytes)
          return connectionLost(cls, "a message larger than a slot: ranks disagree on RINGTREE_SLOT_BYTES");
        if (!readAll(fd_[cls], recv_[cls]->producerSlot(), h->bytes)) return connectionLost(cls, "connection closed");
        recv_[cls]->commitInPlace();
        lastHeardNs_.store(monotonicNs(), std::memory_order_relaxed);
        hooks_.wake(cls);
        continue;
      }
      std::string p(fh.length, '\0');
      if (fh.length > (1u << 20) || !readAll(fd_[cls], p.data(), p.size())) return connectionLost(cls, "connection closed");
      if (fh.type == kHeartbeat && p.size() == 16) {
        uint64_t seq, in;
        std::memcpy(&seq, p.data(), 8);
        std::memcpy(&in, p.data() + 8, 8);
        collSeq_.store(seq, std::memory_order_relaxed);
        inOp_.store(in != 0, std::memory_order_relaxed);
      } else if (fh.type == kFailure && p.size() >= 20) {
        uint32_t f[5];
        std::memcpy(f, p.data(), 20);
        if (20 + size_t(f[3]) + f[4] > p.size()) return connectionLost(cls, "corrupt failure frame");
        std::string message = p.substr(20, f[3]), remedy = p.substr(20 + f[3], f[4]);
        if (int(f[1]) != selfRank_) message = "rank " + std::to_string(int(f[1])) + " reported: " + message;
        hooks_.failed(Status(StatusCode(f[0]), message, remedy, int(f[2])));
      } else if (fh.type == kGoodbye) {
        bye_.store(true, std::memory_order_release);
      }
    }
  } catch (...) {
    connectionLost(cls, "receiver thread exception");
  }
}

}  // namespace ringtree
