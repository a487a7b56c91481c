#include "testing/rpc_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/fd_passing.h"

namespace trellis::testing {

using protocol::MessageType;

Result<std::unique_ptr<RpcTestClient>> RpcTestClient::Connect(
    const std::string& host, uint16_t port) {
  struct sockaddr_storage addr = {};
  socklen_t len;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    len = sizeof(*v4);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    len = sizeof(*v6);
  } else {
    return Status::Invalid("not an IP address: " + host);
  }
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno("socket", errno);
  // As the daemon's (server/rpc_server.h, kRpcSocketBuffer); before connect,
  // as the receive buffer decides the window scale.
  int buffer = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof(buffer));
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffer, sizeof(buffer));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    int err = errno;
    close(fd);
    return Status::FromErrno("connect " + host + ":" + std::to_string(port),
                             err);
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return std::unique_ptr<RpcTestClient>(new RpcTestClient(fd));
}

Result<std::unique_ptr<RpcTestClient>> RpcTestClient::ConnectUnix(
    const std::string& path) {
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return Status::Invalid("socket path too long: " + path);
  }
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno("socket", errno);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    close(fd);
    return Status::FromErrno("connect " + path, err);
  }
  return std::unique_ptr<RpcTestClient>(new RpcTestClient(fd));
}

RpcTestClient::RpcTestClient(int fd) : fd_(fd) {
  struct timeval tv = {10, 0};
  setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

RpcTestClient::~RpcTestClient() { close(fd_); }

Result<protocol::json> RpcTestClient::Hello(
    const std::optional<std::string>& token) {
  json body = {{"version", protocol::kProtocolVersion}};
  if (token) body["token"] = *token;
  return Call(MessageType::kHello, body);
}

Result<protocol::json> RpcTestClient::Call(MessageType type, const json& body) {
  TRELLIS_RETURN_NOT_OK(Send(type, body));
  TRELLIS_ASSIGN_OR_RAISE(protocol::Frame frame, ReadFrame());
  if (frame.type == static_cast<uint16_t>(MessageType::kError)) {
    return protocol::StatusFromErrorBody(frame.body);
  }
  if (frame.type != static_cast<uint16_t>(MessageType::kReply)) {
    return Status::Invalid("expected a reply, got " +
                           protocol::MessageTypeName(frame.type));
  }
  return std::move(frame.body);
}

Status RpcTestClient::Send(MessageType type, const json& body) {
  std::vector<uint8_t> frame = protocol::EncodeFrame(type, body);
  return SendRaw(frame.data(), frame.size());
}

Status RpcTestClient::SendRaw(const uint8_t* data, size_t size) {
  while (size > 0) {
    ssize_t n = send(fd_, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno("send", errno);
    data += n;
    size -= static_cast<size_t>(n);
  }
  return Status::OK();
}

Status RpcTestClient::WriteBlobChunk(ObjectID blob, uint64_t offset,
                                     const uint8_t* data, uint64_t size) {
  auto header =
      protocol::EncodeBulkHeader(MessageType::kBlobData, blob, offset, size);
  return SendAllGathered(fd_, header.data(), header.size(), data, size);
}

Status RpcTestClient::WriteBlob(ObjectID blob, const uint8_t* data,
                                uint64_t size, uint64_t chunk) {
  for (uint64_t offset = 0; offset < size; offset += chunk) {
    TRELLIS_RETURN_NOT_OK(WriteBlobChunk(blob, offset, data + offset,
                                         std::min(chunk, size - offset)));
  }
  return Status::OK();
}

Result<std::vector<uint64_t>> RpcTestClient::StartReadBlobs(
    const std::vector<ObjectID>& ids) {
  TRELLIS_ASSIGN_OR_RAISE(
      json reply,
      Call(MessageType::kReadBlobs, {{"ids", protocol::IdsToJson(ids)}}));
  TRELLIS_ASSIGN_OR_RAISE(std::vector<uint64_t> sizes,
                          protocol::GetUints(reply, "sizes"));
  if (sizes.size() != ids.size()) {
    return Status::Invalid("ReadBlobs replied with " +
                           std::to_string(sizes.size()) + " sizes for " +
                           std::to_string(ids.size()) + " ids");
  }
  return sizes;
}

Status RpcTestClient::ReceiveBlobs(const std::vector<ObjectID>& ids,
                                   const std::vector<uint64_t>& sizes,
                                   uint8_t* dst) {
  std::vector<uint64_t> positions =
      protocol::ConcatenatedPositions(sizes, nullptr);
  for (size_t i = 0; i < ids.size(); ++i) {
    for (uint64_t done = 0; done < sizes[i];) {
      TRELLIS_ASSIGN_OR_RAISE(protocol::BulkHeader bulk, NextBulkFrame());
      if (bulk.type != static_cast<uint16_t>(MessageType::kBlobData) ||
          bulk.blob != ids[i] || bulk.offset != done ||
          bulk.size > sizes[i] - done) {
        return Status::Invalid("unexpected bulk frame for " +
                               bulk.blob.ToString() + " at " +
                               std::to_string(bulk.offset));
      }
      TRELLIS_RETURN_NOT_OK(ReadExactly(dst + positions[i] + done, bulk.size));
      done += bulk.size;
    }
  }
  return Status::OK();
}

Result<protocol::BulkHeader> RpcTestClient::NextBulkFrame() {
  while (true) {
    if (decoder_.NextIsBulk()) {
      TRELLIS_ASSIGN_OR_RAISE(std::optional<protocol::BulkHeader> bulk,
                              decoder_.NextBulk());
      if (bulk) return *bulk;
    } else if (decoder_.buffered() >= protocol::kHeaderSize) {
      TRELLIS_ASSIGN_OR_RAISE(protocol::Frame f, ReadFrame());
      return f.type == static_cast<uint16_t>(MessageType::kError)
                 ? protocol::StatusFromErrorBody(f.body)
                 : Status::Invalid("expected a bulk frame, got " +
                                   protocol::MessageTypeName(f.type));
    }
    TRELLIS_RETURN_NOT_OK(Fill());
  }
}

Result<std::vector<uint8_t>> RpcTestClient::ReadBlobs(
    const std::vector<ObjectID>& ids, std::vector<uint64_t>* sizes) {
  TRELLIS_ASSIGN_OR_RAISE(*sizes, StartReadBlobs(ids));
  uint64_t total = 0;
  protocol::ConcatenatedPositions(*sizes, &total);
  std::vector<uint8_t> bytes(total);
  TRELLIS_RETURN_NOT_OK(ReceiveBlobs(ids, *sizes, bytes.data()));
  return bytes;
}

Result<protocol::Frame> RpcTestClient::ReadFrame() {
  while (true) {
    if (decoder_.NextIsBulk()) {
      return Status::Invalid("expected a frame, got a bulk frame");
    }
    TRELLIS_ASSIGN_OR_RAISE(std::optional<protocol::Frame> frame,
                            decoder_.Next());
    if (frame) return std::move(*frame);
    TRELLIS_RETURN_NOT_OK(Fill());
  }
}

Status RpcTestClient::ExpectClosed() {
  auto frame = ReadFrame();
  if (frame.ok()) {
    return Status::Invalid("expected the connection closed, got " +
                           protocol::MessageTypeName(frame->type));
  }
  return frame.status().IsDisconnected() ? Status::OK() : frame.status();
}

Status RpcTestClient::FinishAndDrain() {
  if (shutdown(fd_, SHUT_WR) != 0) return Status::FromErrno("shutdown", errno);
  while (true) {
    Status st = Fill();
    if (st.IsDisconnected()) return Status::OK();
    TRELLIS_RETURN_NOT_OK(st);
    decoder_ = protocol::FrameDecoder(1u << 30);  // drop what came
  }
}

Status RpcTestClient::Fill() {
  uint8_t buffer[64 * 1024];
  while (true) {
    ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == ECONNRESET) n = 0;
    if (n < 0) return Status::FromErrno("recv", errno);
    if (n == 0) return Status::Disconnected("the daemon closed the connection");
    decoder_.Feed(buffer, static_cast<size_t>(n));
    return Status::OK();
  }
}

Status RpcTestClient::ReadExactly(uint8_t* dst, uint64_t size) {
  uint64_t done = decoder_.Take(dst, size);
  while (done < size) {
    ssize_t n = recv(fd_, dst + done, size - done, MSG_WAITALL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno("recv", errno);
    if (n == 0) return Status::Disconnected("the daemon closed mid-blob");
    done += static_cast<uint64_t>(n);
  }
  return Status::OK();
}

}  // namespace trellis::testing
