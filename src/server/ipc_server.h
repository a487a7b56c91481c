// IpcServer: serves a Store to local clients over a UNIX domain socket.
//
// Connections behave as session.h says; the IPC half of the handshake is
// that the Hello reply carries the arena's memfd (SCM_RIGHTS).
//
// Runs entirely on the io_context's thread.
#pragma once

#include <sys/types.h>

#include <asio.hpp>
#include <string>

#include "server/session.h"
#include "server/store.h"
#include "trellis/status.h"

namespace trellis::server {

struct IpcOptions {
  std::string socket_path;
  mode_t socket_mode = 0600;
  uint32_t max_frame = 64u << 20;
};

class IpcServer : public SessionServer {
 public:
  IpcServer(asio::io_context& io, Store* store, IpcOptions options);
  ~IpcServer() override;

  // Binds and listens. Fails if a live daemon already serves the path;
  // removes a stale socket file left by a dead one.
  Status Start();
  // Stops accepting, closes every connection and removes the socket file.
  void Stop();

 protected:
  Status CheckHello(const nlohmann::json& hello) const override;
  // Sends the reply with the arena's memfd attached.
  Result<size_t> SendHelloReply(int socket,
                                const std::vector<uint8_t>& frame) override;

 private:
  IpcOptions options_;
  asio::local::stream_protocol::acceptor acceptor_;
  bool started_ = false;
};

}  // namespace trellis::server
