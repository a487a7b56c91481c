// The UNIX-socket transport: frames over a UNIX stream socket, and the arena
// memfd that comes with the Hello reply mapped shared.
#include <sched.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "client/shared_arena.h"
#include "client/transport.h"

namespace trellis {

ssize_t ReceiveSoon(int fd, uint8_t* buffer, size_t capacity) {
  // Most replies arrive within a few microseconds, and a get whose daemon
  // and client code are out of cache (the first after a large copy) within
  // a few hundred. Polling for that long saves this thread from being put
  // to sleep and woken again, which on a virtual machine with idle CPUs
  // costs more than the request itself (bench/results/store_bench.md).
  // Each failed poll yields, so a polling client never keeps the daemon (or
  // anything else runnable) off a CPU. After the spin it blocks as usual.
  constexpr auto kSpin = std::chrono::microseconds(300);
  auto deadline = std::chrono::steady_clock::now() + kSpin;
  do {
    ssize_t n = recv(fd, buffer, capacity, MSG_DONTWAIT);
    if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) return n;
    sched_yield();
  } while (std::chrono::steady_clock::now() < deadline);
  return recv(fd, buffer, capacity, 0);
}

namespace {

class UnixTransport final : public SocketTransport {
 public:
  using SocketTransport::SocketTransport;

  Status Send(const uint8_t* data, size_t size) override {
    if (!socket_.valid()) return Status::Disconnected("client is closed");
    auto sent = SendWithFd(socket_.get(), data, size, /*fd=*/-1);
    if (!sent.ok() || *sent != size) {  // blocking: all or an error
      return Status::Disconnected(
          "lost the daemon at " + peer_ + ": " +
          (sent.ok() ? "short write" : sent.status().message()));
    }
    return Status::OK();
  }

  Result<size_t> Receive(uint8_t* buffer, size_t capacity) override {
    if (!socket_.valid()) return Status::Disconnected("client is closed");
    ssize_t n;
    if (arena_) {
      do {
        n = ReceiveSoon(socket_.get(), buffer, capacity);
      } while (n < 0 && errno == EINTR);
    } else {
      // Before Attach: the Hello reply, with the arena descriptor.
      auto got = ReceiveWithFd(socket_.get(), buffer, capacity, &arena_fd_);
      n = got.ok() ? static_cast<ssize_t>(*got) : -1;
    }
    if (n <= 0) {
      return Status::Disconnected("the daemon at " + peer_ +
                                  " closed the connection" +
                                  (arena_ ? "" : " during Hello"));
    }
    return static_cast<size_t>(n);
  }

  Status Attach(const protocol::json& hello) override {
    if (!arena_fd_.valid()) {
      return Status::Invalid("daemon did not pass the arena descriptor");
    }
    auto size = protocol::GetUint(hello, "arena_size");
    if (!size.ok()) return Status::Invalid("malformed Hello reply from daemon");
    // Daemons before huge pages do not say: 4 KiB pages.
    auto huge_pages = protocol::GetBool(hello, "huge_pages", false);
    if (!huge_pages.ok())
      return Status::Invalid("malformed Hello reply from daemon");
    TRELLIS_ASSIGN_OR_RAISE(
        arena_, SharedArena::Map(arena_fd_.get(), *size, *huge_pages));
    arena_fd_.Reset();  // the mapping keeps the memory
    return Status::OK();
  }

  SharedArena* arena() override { return arena_.get(); }

 private:
  UniqueFd arena_fd_;  // received with the Hello reply, until mapped
  std::unique_ptr<SharedArena> arena_;
};

}  // namespace

std::unique_ptr<Transport> MakeUnixTransport(UniqueFd socket,
                                             std::string peer) {
  return std::make_unique<UnixTransport>(std::move(socket), std::move(peer));
}

Result<std::unique_ptr<Transport>> ConnectUnixTransport(
    const std::string& path) {
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    return Status::Invalid("socket path is too long: " + path);
  }
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::FromErrno("socket", errno);
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (connect(fd.get(), reinterpret_cast<struct sockaddr*>(&addr),
              sizeof(addr)) != 0) {
    return Status::Disconnected("no trellis daemon serves " + path + ": " +
                                std::strerror(errno));
  }
  return MakeUnixTransport(std::move(fd), path);
}

}  // namespace trellis
