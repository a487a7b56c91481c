// The TCP transport: frames over a TCP connection to a daemon's RPC server
// (trellisd --rpc), for clients on machines without a local daemon. There
// is no shared arena: blob bytes travel in bulk frames (docs/protocol.md,
// "Bulk frames"), written from and read into client-owned buffers.
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "client/transport.h"

namespace trellis {

namespace {

class TcpTransport final : public SocketTransport {
 public:
  TcpTransport(UniqueFd socket, std::string peer,
               std::chrono::milliseconds timeout)
      : SocketTransport(std::move(socket), std::move(peer)),
        timeout_(timeout) {}

  Status Send(const uint8_t* data, size_t size) override {
    return SendGathered(data, size, nullptr, 0);
  }

  Status SendGathered(const uint8_t* head, size_t head_size,
                      const uint8_t* payload, size_t payload_size) override {
    if (!socket_.valid()) return Status::Disconnected("client is closed");
    Status sent =
        SendAllGathered(socket_.get(), head, head_size, payload, payload_size);
    if (!sent.ok()) {
      return Status::Disconnected("lost the trellis daemon at " + peer_ + ": " +
                                  sent.message());
    }
    return Status::OK();
  }

  Result<size_t> Receive(uint8_t* buffer, size_t capacity) override {
    if (!socket_.valid()) return Status::Disconnected("client is closed");
    ssize_t n;
    do {
      n = ReceiveSoon(socket_.get(), buffer, capacity);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return Status::Disconnected("no reply from the trellis daemon at " +
                                  peer_ + " within " +
                                  std::to_string(timeout_.count()) + " ms");
    }
    if (n <= 0) {
      return Status::Disconnected(
          "the trellis daemon at " + peer_ + " closed the connection" +
          (n < 0 ? std::string(": ") + std::strerror(errno) : ""));
    }
    return static_cast<size_t>(n);
  }

  Status Attach(const protocol::json&) override { return Status::OK(); }
  SharedArena* arena() override { return nullptr; }

 private:
  const std::chrono::milliseconds timeout_;
};

// Bounds how long connect, send and receive may block on `fd`.
void SetTimeouts(int fd, std::chrono::milliseconds timeout) {
  if (timeout.count() <= 0) return;
  struct timeval tv = {};
  tv.tv_sec = timeout.count() / 1000;
  tv.tv_usec = (timeout.count() % 1000) * 1000;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));  // connect too
}

}  // namespace

static Result<std::pair<std::string, std::string>> SplitEndpoint(
    const std::string& endpoint) {
  std::string host, port;
  if (!endpoint.empty() && endpoint[0] == '[') {  // [v6]:port
    size_t close = endpoint.find(']');
    if (close == std::string::npos || close + 1 >= endpoint.size() ||
        endpoint[close + 1] != ':') {
      return Status::Invalid("RPC endpoint " + endpoint +
                             " is not HOST:PORT or [V6]:PORT");
    }
    host = endpoint.substr(1, close - 1);
    port = endpoint.substr(close + 2);
  } else {
    size_t colon = endpoint.rfind(':');
    if (colon == std::string::npos || colon == 0) {
      return Status::Invalid("RPC endpoint " + endpoint +
                             " is not HOST:PORT or [V6]:PORT");
    }
    host = endpoint.substr(0, colon);
    port = endpoint.substr(colon + 1);
  }
  if (port.empty() ||
      port.find_first_not_of("0123456789") != std::string::npos ||
      port.size() > 5 || std::stoul(port) == 0 || std::stoul(port) > 65535) {
    return Status::Invalid("RPC endpoint " + endpoint +
                           " has no valid port (1-65535)");
  }
  return std::make_pair(host, port);
}

Result<std::unique_ptr<Transport>> ConnectTcpTransport(
    const std::string& endpoint, std::chrono::milliseconds timeout) {
  TRELLIS_ASSIGN_OR_RAISE(auto host_port, SplitEndpoint(endpoint));
  const auto& [host, port] = host_port;
  struct addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  struct addrinfo* found = nullptr;
  int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) {
    return Status::Disconnected("cannot resolve the trellis daemon at " +
                                endpoint + ": " + gai_strerror(rc));
  }
  std::string last_error = "no address";
  UniqueFd connected;
  for (struct addrinfo* a = found; a; a = a->ai_next) {
    UniqueFd fd(
        socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
    if (!fd.valid()) {
      last_error = std::strerror(errno);
      continue;
    }
    SetTimeouts(fd.get(), timeout);
    if (connect(fd.get(), a->ai_addr, a->ai_addrlen) == 0) {
      connected = std::move(fd);
      break;
    }
    last_error = std::strerror(errno);
  }
  freeaddrinfo(found);
  if (!connected.valid()) {
    return Status::Disconnected("no trellis daemon serves RPC at " + endpoint +
                                ": " + last_error);
  }
  // Requests are small frames answered at once: never hold them back.
  int one = 1;
  setsockopt(connected.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return std::unique_ptr<Transport>(
      new TcpTransport(std::move(connected), endpoint, timeout));
}

Result<std::string> RpcTokenFromEnvironment() {
  const char* path = std::getenv("TRELLIS_RPC_TOKEN_FILE");
  if (!path || !*path) return std::string();
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Status::IOError(std::string("cannot read TRELLIS_RPC_TOKEN_FILE ") +
                           path + ": " + std::strerror(errno));
  }
  std::stringstream content;
  content << in.rdbuf();
  std::string token = content.str();
  // As trellisd reads --rpc-token: one trailing newline is not the token's.
  if (!token.empty() && token.back() == '\n') token.pop_back();
  if (!token.empty() && token.back() == '\r') token.pop_back();
  return token;
}

}  // namespace trellis
