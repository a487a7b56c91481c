#include "server/ipc_server.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "common/fd_passing.h"
#include "common/socket_path.h"

namespace trellis::server {

using stream = asio::local::stream_protocol;

IpcServer::IpcServer(asio::io_context& io, Store* store, IpcOptions options)
    : SessionServer(store, options.max_frame),
      options_(std::move(options)),
      acceptor_(io) {}

IpcServer::~IpcServer() { Stop(); }

Status IpcServer::CheckHello(const nlohmann::json&) const {
  return Status::OK();  // whoever may open the socket may connect
}

Result<size_t> IpcServer::SendHelloReply(int socket,
                                         const std::vector<uint8_t>& reply) {
  // The reply travels with the arena fd. It is the first write on this
  // socket, so nothing is queued before it; what the socket does not take
  // now is written by the session.
  auto sent =
      SendWithFd(socket, reply.data(), reply.size(), store()->arena().fd());
  if (sent.ok() && *sent == 0) return Status::IOError("socket full");
  return sent;
}

namespace {

// True if something accepts connections on `path`.
bool IsServed(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  bool served =
      connect(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return served;
}

}  // namespace

Status IpcServer::Start() {
  const std::string& path = options_.socket_path;
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    return Status::Invalid("socket path is too long (" +
                           std::to_string(path.size()) + " bytes): " + path);
  }
  TRELLIS_RETURN_NOT_OK(EnsureSocketDir(path));
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Status::Invalid(path + " exists and is not a socket");
    }
    if (IsServed(path)) {
      return Status::ObjectExists("a live daemon already serves " + path);
    }
    spdlog::info("removing stale socket {}", path);
    if (unlink(path.c_str()) != 0) {
      return Status::FromErrno("cannot remove stale socket " + path, errno);
    }
  }
  asio::error_code ec;
  acceptor_.open(stream(), ec);
  if (!ec) acceptor_.bind(stream::endpoint(path), ec);
  if (!ec) {
    if (chmod(path.c_str(), options_.socket_mode) != 0) {
      return Status::FromErrno("chmod " + path, errno);
    }
    acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  }
  if (ec)
    return Status::IOError("cannot listen on " + path + ": " + ec.message());
  started_ = true;
  AcceptLoop(acceptor_, [this](stream::socket socket) {
    StartSession(Socket(std::move(socket)), "");
  });
  return Status::OK();
}

void IpcServer::Stop() {
  if (!started_) return;
  started_ = false;
  StopServing(acceptor_);
  unlink(options_.socket_path.c_str());
}

}  // namespace trellis::server
