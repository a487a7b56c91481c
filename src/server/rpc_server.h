// RpcServer: serves a Store to remote clients (and other daemons) over TCP:
// the request set of the IPC server plus bulk frames (docs/protocol.md,
// "TCP transport" and "Bulk frames").
//
// Connections behave as session.h says. The TCP half of the handshake:
// * If the server has a token, the Hello must carry it ({version, token});
//   a missing or wrong token gets Error (Invalid, "RPC token rejected: ...")
//   and a closed connection, and a warning naming the peer is logged.
// * The Hello reply has the IPC fields plus "transport": "tcp"; no
//   descriptor travels (a remote client has no arena: it moves bytes with
//   WriteBlob and ReadBlobs).
// Accepted sockets have TCP_NODELAY set (replies are small and latency
// matters; bulk bytes are written in large gathered writes anyway) and
// fixed socket buffers (kRpcSocketBuffer).
//
// Only loopback addresses may be served without a token: a request can read
// and overwrite any object, so exposing the port is exposing the store.
//
// Runs entirely on the io_context's thread.
#pragma once

#include <asio.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "server/session.h"
#include "server/store.h"
#include "trellis/status.h"

namespace trellis::server {

// Socket buffer size asked for on RPC connections, both directions (the
// kernel doubles it, up to net.core.{r,w}mem_max). Measured on loopback
// under load: TCP's autotuned buffers move 8 MiB sends at ~1.0 GB/s, 4 MiB
// fixed ones at ~1.5 GB/s, iperf3's rate on the same machine. Fixed buffers
// turn autotuning off, which only a long, fast path (far beyond a cluster's
// LAN: 8 MiB covers 10 Gbit/s at 6 ms RTT) would miss.
inline constexpr int kRpcSocketBuffer = 4 << 20;

struct RpcOptions {
  std::string host = "127.0.0.1";  // an address or a resolvable name
  uint16_t port = 0;               // 0: any free port (see endpoint())
  // The shared secret clients must present; empty: none (loopback only).
  std::string token;
  uint32_t max_frame = 64u << 20;
};

// Parses the value of trellisd --rpc: "PORT", "HOST:PORT" or "[V6]:PORT"
// (HOST defaults to 127.0.0.1). Invalid, quoting `text`, otherwise.
Result<std::pair<std::string, uint16_t>> ParseRpcEndpoint(
    const std::string& text);

// Writes `port` and a newline to `path` (via a temporary file renamed into
// place, so a reader never sees half of it); errors name `flag`.
Status WritePortFile(const std::string& path, uint16_t port,
                     const std::string& flag = "--rpc-port-file");

// Reads the token file of trellisd --rpc-token: its content, less one
// trailing newline. IOError if it cannot be read; Invalid if it is empty or
// readable or writable by others than its owner and group (like ssh with
// private keys: a secret others can read is no secret).
Result<std::string> ReadRpcToken(const std::string& path);

// Compares a presented token with the expected one in time that does not
// depend on where they differ.
bool TokensEqual(const std::string& presented, const std::string& expected);

class RpcServer : public SessionServer {
 public:
  RpcServer(asio::io_context& io, RpcOptions options);
  ~RpcServer() override;

  // Resolves the host, binds and listens. Invalid if the host is not a
  // loopback address and there is no token (the message names
  // --rpc-token); IOError if it cannot be resolved or bound. Connections
  // wait in the listen backlog until Serve: the daemon listens before it
  // registers (so the member list carries the real endpoint) and serves
  // once its store exists.
  Status Listen();
  // Starts accepting connections and serving `store` (which must outlive
  // the server). Call once, after a successful Listen.
  void Serve(Store* store);
  // Stops accepting and closes every connection.
  void Stop();

  // The endpoint listened on (its port is the chosen one for port 0).
  // Valid after a successful Start.
  const asio::ip::tcp::endpoint& endpoint() const { return endpoint_; }

 protected:
  Status CheckHello(const nlohmann::json& hello) const override;
  nlohmann::json HelloReply(ClientId client) const override;

 private:
  asio::io_context& io_;
  RpcOptions options_;
  asio::ip::tcp::acceptor acceptor_;
  asio::ip::tcp::endpoint endpoint_;
  bool started_ = false;
};

// "1.2.3.4:5" or "[::1]:5".
std::string EndpointString(const asio::ip::tcp::endpoint& endpoint);

// trellisd's flags for the RPC server.
struct RpcFlags {
  std::string endpoint;    // --rpc [HOST:]PORT; empty: no RPC server
  std::string token_file;  // --rpc-token FILE
  std::string port_file;   // --rpc-port-file FILE
};
// The RPC server `flags` ask for, listening but not yet serving (null if
// there is no --rpc): the endpoint parsed, the token read (ReadRpcToken),
// and the chosen port written to the port file ("PORT\n", replaced
// atomically) once listening. The errors of those steps, naming the flag.
Result<std::unique_ptr<RpcServer>> ListenRpcServer(asio::io_context& io,
                                                   const RpcFlags& flags,
                                                   uint32_t max_frame);

// The endpoint other members reach `server` at ("host:port"), for the
// member list: the address it is bound to, or, bound to every address
// (0.0.0.0 or ::), `hostname` with its port.
std::string AdvertisedEndpoint(const RpcServer& server,
                               const std::string& hostname);

}  // namespace trellis::server
