// IpcServer: serves a Store to local clients over a UNIX domain socket.
//
// Each connection must start with Hello; the reply carries the arena's memfd
// (SCM_RIGHTS). Afterwards frames are decoded and handed to the Store one at
// a time: while a request waits (a blocking GetName) later frames of the same
// connection stay queued, so replies are always in request order. A malformed
// or oversized frame, an unknown type or a protocol violation gets an Error
// reply and the connection is closed; other connections are unaffected.
//
// Runs entirely on the io_context's thread.
#pragma once

#include <sys/types.h>

#include <asio.hpp>
#include <memory>
#include <string>
#include <unordered_set>

#include "server/store.h"
#include "trellis/status.h"

namespace trellis::server {

struct IpcOptions {
  std::string socket_path;
  mode_t socket_mode = 0600;
  uint32_t max_frame = 64u << 20;
};

class IpcServer {
 public:
  IpcServer(asio::io_context& io, Store* store, IpcOptions options);
  ~IpcServer();

  // Binds and listens. Fails if a live daemon already serves the path;
  // removes a stale socket file left by a dead one.
  Status Start();
  // Stops accepting, closes every connection and removes the socket file.
  void Stop();

  size_t session_count() const;

 private:
  class Session;
  void Accept();
  void OnSessionClosed(const std::shared_ptr<Session>& session);

  asio::io_context& io_;
  Store* store_;
  IpcOptions options_;
  asio::local::stream_protocol::acceptor acceptor_;
  std::unordered_set<std::shared_ptr<Session>> sessions_;
  bool started_ = false;
};

}  // namespace trellis::server
