// SessionServer: the part of trellisd's servers that is the same whatever
// the transport: it owns the connections (sessions) and runs each one. The
// IPC server (UNIX socket, ipc_server.h) and the RPC server (TCP,
// rpc_server.h) derive from it; they differ only in how they accept and in
// their half of the handshake (the virtual hooks below).
//
// A connection (session.cc) must start with Hello. Afterwards frames are
// decoded and handed to the Store one at a time: while a request waits (a
// blocking GetName, a request waiting for memory) later frames of the same
// connection stay queued, so replies are always in request order. A
// malformed or oversized frame, an unknown type or a protocol violation gets
// an Error reply and the connection is closed; other connections are
// unaffected. Bulk frames (docs/protocol.md, "Bulk frames") are read and
// written straight between the socket and the arena:
// * BlobData (WriteBlob) writes into a CREATED blob of the client
//   (Store::WritableRange); the part the decoder already buffered is copied,
//   the rest read directly into the arena. No reply.
// * ReadBlobs is GetBlobs (holds, reloads) plus the bytes: the Reply
//   {sizes}, then every byte of each blob in BlobData frames written from
//   the arena, after which the holds are released. The connection's next
//   frame is handled once the last byte is written.
// Memory per connection stays bounded: a connection that has sent more
// than kReadPauseBytes beyond a request that waits is not read from until
// the request is answered.
//
// Runs entirely on the io_context's thread; not thread-safe.
#pragma once

#include <spdlog/spdlog.h>

#include <asio.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_set>
#include <vector>

#include "server/store.h"
#include "trellis/status.h"

namespace trellis::server {

class Session;

class SessionServer {
 public:
  // A socket of any stream transport (UNIX or TCP).
  using Socket = asio::generic::stream_protocol::socket;
  // Bytes a connection may have buffered behind a waiting request before
  // it is no longer read from.
  static constexpr size_t kReadPauseBytes = 16u << 20;

  // `store` must outlive the server. `max_frame`: largest request body.
  SessionServer(Store* store, uint32_t max_frame);
  virtual ~SessionServer();
  SessionServer(const SessionServer&) = delete;
  SessionServer& operator=(const SessionServer&) = delete;

  size_t session_count() const { return sessions_.size(); }
  // Bytes read from and written to this server's connections since start
  // (frames, bulk payloads and replies alike).
  uint64_t bytes_received() const { return bytes_received_; }
  uint64_t bytes_sent() const { return bytes_sent_; }

 protected:
  // Serves an accepted connection; `peer` names it in the log.
  void StartSession(Socket socket, std::string peer);
  // Closes every connection now (pending replies are dropped).
  void CloseSessions();
  // Stops accepting on `acceptor`, then closes every connection.
  template <typename Acceptor>
  void StopServing(Acceptor& acceptor) {
    asio::error_code ignored;
    acceptor.close(ignored);
    CloseSessions();
  }
  Store* store() const { return store_; }
  // For a server made before its store (RpcServer listens first); set
  // before the first session starts.
  void set_store(Store* store) { store_ = store; }

  // --- the transport's half of the handshake ---
  // Checks a Hello whose version is right. An error is the reply, the
  // connection is closed and a warning naming the peer is logged.
  virtual Status CheckHello(const nlohmann::json& hello) const = 0;
  // The Hello reply for `client` (default: Store::HelloReply).
  virtual nlohmann::json HelloReply(ClientId client) const;
  // Writes the start of the encoded Hello reply `frame` itself, e.g. with a
  // descriptor attached, and returns how many bytes it wrote (the session
  // writes the rest); an error closes the connection. It is the first write
  // on the socket. Default: writes nothing (returns 0).
  virtual Result<size_t> SendHelloReply(int socket,
                                        const std::vector<uint8_t>& frame);

 private:
  friend class Session;
  void OnSessionClosed(const std::shared_ptr<Session>& session);

  Store* store_;
  uint32_t max_frame_;
  std::unordered_set<std::shared_ptr<Session>> sessions_;
  uint64_t bytes_received_ = 0;
  uint64_t bytes_sent_ = 0;
};

// Accepts connections on `acceptor` until it is closed, handing each socket
// to `on_accept`. An accept error other than the acceptor's closing is
// logged and accepting goes on.
template <typename Acceptor, typename OnAccept>
void AcceptLoop(Acceptor& acceptor, OnAccept on_accept) {
  acceptor.async_accept(
      [&acceptor, on_accept](const asio::error_code& ec,
                             typename Acceptor::protocol_type::socket socket) {
        if (ec) {
          if (ec == asio::error::operation_aborted || !acceptor.is_open())
            return;
          spdlog::warn("accept failed: {}", ec.message());
        } else {
          on_accept(std::move(socket));
        }
        AcceptLoop(acceptor, on_accept);
      });
}

}  // namespace trellis::server
