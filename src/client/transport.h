// Transport: how a ClientCore reaches its daemon. Internal to libtrellis.
//
// ClientCore speaks the frame protocol (common/protocol.h) and knows
// nothing of sockets; a Transport moves its bytes and, when the daemon is on
// this machine, maps the daemon's arena so blobs are written and read in
// place. The one implementation today is the UNIX-socket transport
// (ConnectUnixTransport): frames over a UNIX stream socket, the arena memfd
// passed with the Hello reply (SCM_RIGHTS) and mapped shared.
//
// Remote daemons are reached by the TCP transport (ConnectTcpTransport,
// tcp_transport.cc). It has no shared arena (arena() stays null), so
// ClientCore then moves blob bytes through bulk frames:
//   - Transport: Send/Receive over a TCP socket (with the same poll-then-
//     block Receive: ReceiveSoon works on any stream socket), Attach that
//     keeps nothing from the Hello reply, peer() "host:port".
//   - ClientCore::Start: today it refuses a transport without an arena
//     (NotImplemented); it then records that it has none.
//   - Writers: Client::CreateBlobs hands out BlobWriters whose data() is a
//     client-owned buffer (the writer owns it) instead of arena memory, and
//     Seal uploads it; PutBlob's inline path already sends bytes.
//   - Readers: GetBlobs/GetMeta fetch the bytes into a Lease that owns them
//     (common/lease.h: Lease::BlobData is keyed by blob id for this), and a
//     Blob points into that lease. Blob, ObjectMeta::AsBlob, Tensor and
//     DataFrame read through the lease, so their callers do not change.
//   - Client::arena_base()/InArena() report no arena (null, false).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "common/fd_passing.h"
#include "common/protocol.h"
#include "trellis/status.h"

namespace trellis {

class SharedArena;

// One connection to a daemon. Send, Receive, Attach and Close are called by
// one thread at a time (ClientCore serialises them under its io mutex);
// arena() and peer() may be called from any thread once Attach returned.
class Transport {
 public:
  virtual ~Transport() = default;

  // Writes all of [data, data+size) (whole frames), blocking until the
  // bytes are handed to the connection. Disconnected, naming peer(), if the
  // connection fails; the caller then Closes the transport.
  virtual Status Send(const uint8_t* data, size_t size) = 0;

  // Writes [head, head+head_size) then [payload, payload+payload_size) as
  // one stream (a bulk frame: its header and preamble, then the payload
  // straight from the caller's buffer), with one gathered write where the
  // transport can. Errors as Send.
  virtual Status SendGathered(const uint8_t* head, size_t head_size,
                              const uint8_t* payload, size_t payload_size) {
    TRELLIS_RETURN_NOT_OK(Send(head, head_size));
    return payload_size > 0 ? Send(payload, payload_size) : Status::OK();
  }

  // Reads up to `capacity` bytes of what the daemon sent, blocking until at
  // least one arrived; returns the count (> 0). Disconnected, naming
  // peer(), when the daemon closed the connection or the read fails.
  //
  // Latency: replies usually arrive within microseconds, and being put to
  // sleep and woken costs more than that on these machines. Once attached,
  // an implementation polls briefly (yielding the CPU between polls) before
  // it blocks: see ReceiveSoon.
  virtual Result<size_t> Receive(uint8_t* buffer, size_t capacity) = 0;

  // Called once, with the body of the daemon's Hello reply (already checked
  // to be a Reply), before any other request. A local transport maps the
  // arena whose descriptor came with the reply. Invalid if the reply lacks
  // what the transport needs; IOError if mapping fails. On error the
  // transport is unusable and its destruction releases what it received.
  virtual Status Attach(const protocol::json& hello) = 0;

  // The daemon's arena as mapped by Attach; null before, and always for a
  // transport without one (a remote daemon). Stays valid (and mapped) until
  // the transport is destroyed, even after Close.
  virtual SharedArena* arena() = 0;

  // Closes the connection; later Send/Receive fail with Disconnected. The
  // arena stays mapped. Idempotent.
  virtual void Close() = 0;

  // Who is at the other end, for messages: a socket path, "host:port".
  virtual const std::string& peer() const = 0;
};

// The part every transport over one connected stream socket shares: it
// owns the socket and names the peer; Close closes the socket.
class SocketTransport : public Transport {
 public:
  SocketTransport(UniqueFd socket, std::string peer)
      : socket_(std::move(socket)), peer_(std::move(peer)) {}
  void Close() override { socket_.Reset(); }
  const std::string& peer() const override { return peer_; }

 protected:
  UniqueFd socket_;
  const std::string peer_;
};

// Connects to the daemon listening on the UNIX socket `path`. Invalid if
// the path is too long for a socket address; Disconnected if nothing serves
// it.
Result<std::unique_ptr<Transport>> ConnectUnixTransport(
    const std::string& path);

// A UNIX-socket transport over `socket`, a connected UNIX stream socket that
// it takes over; `peer` names the other end in messages. (Tests use it with
// one end of a socketpair playing the daemon.)
std::unique_ptr<Transport> MakeUnixTransport(UniqueFd socket, std::string peer);

// Connects to the RPC (TCP) server of the daemon at `endpoint`, "HOST:PORT"
// or "[V6]:PORT" (HOST a name or an address, resolved with getaddrinfo),
// with TCP_NODELAY. Invalid if the endpoint is malformed; Disconnected,
// naming the endpoint, if it cannot be resolved or nothing accepts there.
// A positive `timeout` bounds each connect, send and receive (Disconnected
// saying so when it passes); 0 waits as long as TCP does.
Result<std::unique_ptr<Transport>> ConnectTcpTransport(
    const std::string& endpoint,
    std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

// The token in the file $TRELLIS_RPC_TOKEN_FILE (one trailing newline
// dropped, as trellisd reads --rpc-token); empty if the variable is unset.
// IOError if the file cannot be read.
Result<std::string> RpcTokenFromEnvironment();

// recv(2) on the stream socket `fd` of up to `capacity` bytes: polls for
// what has arrived for a few hundred microseconds, yielding the CPU between
// polls, then blocks. Returns recv's result (errno set when it is < 0).
ssize_t ReceiveSoon(int fd, uint8_t* buffer, size_t capacity);

}  // namespace trellis
