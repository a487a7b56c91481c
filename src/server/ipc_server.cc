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
#include "common/protocol.h"
#include "common/socket_path.h"

namespace trellis::server {

using protocol::MessageType;
using stream = asio::local::stream_protocol;

class IpcServer::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(IpcServer* server, stream::socket socket)
      : server_(server),
        socket_(std::move(socket)),
        decoder_(server->options_.max_frame) {}

  void Start() { Read(); }

  // Closes the socket now; pending replies are dropped.
  void Close() {
    if (closed_) return;
    closed_ = true;
    asio::error_code ignored;
    socket_.close(ignored);
    if (client_ != 0) server_->store_->Disconnect(client_);
    client_ = 0;
    server_->OnSessionClosed(shared_from_this());
  }

 private:
  void Read() {
    auto self = shared_from_this();
    socket_.async_read_some(asio::buffer(read_buffer_),
                            [this, self](const asio::error_code& ec, size_t n) {
                              if (closed_) return;
                              if (ec) {
                                if (ec != asio::error::eof &&
                                    ec != asio::error::operation_aborted) {
                                  spdlog::debug("client {}: read failed: {}",
                                                client_, ec.message());
                                }
                                Close();
                                return;
                              }
                              decoder_.Feed(read_buffer_.data(), n);
                              ProcessFrames();
                              if (!closed_ && !closing_) Read();
                            });
  }

  // Handles queued frames until one must wait or the buffer is drained.
  void ProcessFrames() {
    while (!closed_ && !closing_ && !waiting_) {
      auto frame = decoder_.Next();
      if (!frame.ok()) {
        Fail(frame.status());
        break;
      }
      if (!frame->has_value()) break;
      HandleFrame(std::move(**frame));
    }
    Flush();
  }

  void HandleFrame(protocol::Frame frame) {
    if (client_ == 0) {
      HandleHello(frame);
      return;
    }
    if (!protocol::IsRequestType(frame.type) ||
        frame.type == static_cast<uint16_t>(MessageType::kHello)) {
      Fail(Status::Invalid("unexpected message type " +
                           protocol::MessageTypeName(frame.type)));
      return;
    }
    // The reply may come inside Handle (most requests) or later (a GetName
    // that waits); in the latter case, processing resumes when it comes.
    struct CallState {
      bool in_handle = true;
      bool replied = false;
    };
    auto call = std::make_shared<CallState>();
    std::weak_ptr<Session> weak = shared_from_this();
    waiting_ = true;
    server_->store_->Handle(
        client_, frame.type, frame.body,
        [this, weak, call](Result<json> reply) {
          auto self = weak.lock();
          if (!self || closed_) return;
          if (reply.ok()) {
            protocol::AppendFrame(MessageType::kReply, *reply, &pending_);
          } else {
            protocol::AppendFrame(MessageType::kError,
                                  protocol::ErrorBody(reply.status()),
                                  &pending_);
          }
          call->replied = true;
          if (call->in_handle) return;
          waiting_ = false;
          ProcessFrames();
        });
    call->in_handle = false;
    if (call->replied ||
        frame.type == static_cast<uint16_t>(MessageType::kRelease)) {
      waiting_ = false;
    }
  }

  void HandleHello(const protocol::Frame& frame) {
    if (frame.type != static_cast<uint16_t>(MessageType::kHello)) {
      Fail(Status::Invalid("the first message must be Hello, got " +
                           protocol::MessageTypeName(frame.type)));
      return;
    }
    auto version = protocol::GetUint(frame.body, "version");
    if (!version.ok()) {
      Fail(version.status());
      return;
    }
    if (*version != protocol::kProtocolVersion) {
      Fail(Status::Invalid("protocol version " + std::to_string(*version) +
                           " is not supported (daemon speaks " +
                           std::to_string(protocol::kProtocolVersion) + ")"));
      return;
    }
    client_ = server_->store_->Connect();
    std::vector<uint8_t> reply = protocol::EncodeFrame(
        MessageType::kReply, server_->store_->HelloReply(client_));
    // The reply travels with the arena fd. It is the first write on this
    // socket, so nothing is queued before it; what the socket does not take
    // now is written by Flush.
    auto sent = SendWithFd(socket_.native_handle(), reply.data(), reply.size(),
                           server_->store_->arena().fd());
    if (!sent.ok() || *sent == 0) {
      spdlog::debug("client {}: hello reply failed: {}", client_,
                    sent.ok() ? "socket full" : sent.status().message());
      Close();
      return;
    }
    pending_.insert(pending_.end(), reply.begin() + *sent, reply.end());
    spdlog::debug("client {} connected", client_);
  }

  // Replies with an error, then closes once it is written.
  void Fail(const Status& status) {
    spdlog::warn("client {}: closing connection: {}", client_,
                 status.ToString());
    protocol::AppendFrame(MessageType::kError, protocol::ErrorBody(status),
                          &pending_);
    closing_ = true;
    Flush();
  }

  void Flush() {
    if (closed_ || writing_ || pending_.empty()) {
      if (closing_ && !writing_ && pending_.empty()) Close();
      return;
    }
    writing_ = true;
    in_flight_.swap(pending_);
    pending_.clear();
    auto self = shared_from_this();
    asio::async_write(socket_, asio::buffer(in_flight_),
                      [this, self](const asio::error_code& ec, size_t) {
                        writing_ = false;
                        in_flight_.clear();
                        if (closed_) return;
                        if (ec) {
                          Close();
                          return;
                        }
                        Flush();
                      });
  }

  IpcServer* server_;
  stream::socket socket_;
  protocol::FrameDecoder decoder_;
  std::array<uint8_t, 64 * 1024> read_buffer_;
  std::vector<uint8_t> pending_;    // replies not yet handed to the socket
  std::vector<uint8_t> in_flight_;  // the buffer of the write under way
  ClientId client_ = 0;             // 0 until Hello
  bool waiting_ = false;            // a request's reply is outstanding
  bool writing_ = false;
  bool closing_ = false;  // close once pending_ is written
  bool closed_ = false;
};

IpcServer::IpcServer(asio::io_context& io, Store* store, IpcOptions options)
    : io_(io), store_(store), options_(std::move(options)), acceptor_(io) {}

IpcServer::~IpcServer() { Stop(); }

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
  Accept();
  return Status::OK();
}

void IpcServer::Accept() {
  acceptor_.async_accept(
      [this](const asio::error_code& ec, stream::socket socket) {
        if (ec) {
          if (ec != asio::error::operation_aborted) {
            spdlog::warn("accept failed: {}", ec.message());
            Accept();
          }
          return;
        }
        auto session = std::make_shared<Session>(this, std::move(socket));
        sessions_.insert(session);
        session->Start();
        Accept();
      });
}

void IpcServer::OnSessionClosed(const std::shared_ptr<Session>& session) {
  sessions_.erase(session);
}

size_t IpcServer::session_count() const { return sessions_.size(); }

void IpcServer::Stop() {
  if (!started_) return;
  started_ = false;
  asio::error_code ignored;
  acceptor_.close(ignored);
  auto sessions = sessions_;
  for (const auto& s : sessions) s->Close();
  unlink(options_.socket_path.c_str());
}

}  // namespace trellis::server
