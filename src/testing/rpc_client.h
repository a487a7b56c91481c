// RpcTestClient: a minimal blocking client of trellisd's RPC (TCP) server,
// for tests and measurements. It speaks frames, not objects: the caller
// builds request bodies (docs/protocol.md). It stands in until the client
// library has a TCP transport, and is kept small but exact about the wire:
// bulk frames are sent with one gathered write per chunk and received
// straight into the caller's buffer.
//
// Blocking, with a receive timeout (10 s) so a test that waits for a reply
// that never comes fails instead of hanging. Not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/protocol.h"
#include "trellis/object_id.h"
#include "trellis/status.h"

namespace trellis::testing {

class RpcTestClient {
 public:
  using json = protocol::json;

  // Connects to host:port (an IPv4/IPv6 address). No Hello is sent.
  // IOError if the connection fails.
  static Result<std::unique_ptr<RpcTestClient>> Connect(const std::string& host,
                                                        uint16_t port);
  // The same over trellisd's UNIX socket (the fd a Hello reply carries
  // there is discarded: this client reads no arena).
  static Result<std::unique_ptr<RpcTestClient>> ConnectUnix(
      const std::string& path);
  ~RpcTestClient();

  // Sends Hello {version[, token]} and returns the reply body, or the
  // daemon's Error as a Status.
  Result<json> Hello(const std::optional<std::string>& token = std::nullopt);
  // Sends a request and returns its reply body (the Error as a Status).
  Result<json> Call(protocol::MessageType type, const json& body);
  // Sends a request without reading a reply.
  Status Send(protocol::MessageType type, const json& body);
  Status SendRaw(const uint8_t* data, size_t size);

  // Sends one BlobData bulk frame: bytes [offset, offset + size) of `blob`.
  Status WriteBlobChunk(ObjectID blob, uint64_t offset, const uint8_t* data,
                        uint64_t size);
  // Sends a whole blob as BlobData frames of at most `chunk` bytes.
  Status WriteBlob(ObjectID blob, const uint8_t* data, uint64_t size,
                   uint64_t chunk = protocol::kMaxBulkChunk);

  // ReadBlobs in two steps: the request and its reply (the blobs' sizes) ...
  Result<std::vector<uint64_t>> StartReadBlobs(
      const std::vector<ObjectID>& ids);
  // ... then the bytes: the bulk frames of blobs `ids` of `sizes`, each
  // stored in `dst` at its protocol::ConcatenatedPositions position.
  // Invalid if a frame is not the next chunk expected.
  Status ReceiveBlobs(const std::vector<ObjectID>& ids,
                      const std::vector<uint64_t>& sizes, uint8_t* dst);
  // Both steps into a buffer of the layout's size.
  Result<std::vector<uint8_t>> ReadBlobs(const std::vector<ObjectID>& ids,
                                         std::vector<uint64_t>* sizes);

  // The next (non-bulk) frame; Disconnected once the daemon closed.
  Result<protocol::Frame> ReadFrame();
  // True if the daemon has closed the connection (reads until EOF, failing
  // with Invalid if a frame comes instead).
  Status ExpectClosed();
  // Stops sending (shutdown SHUT_WR), then reads and drops whatever comes
  // until the daemon closes. IOError if it does not within the timeout.
  Status FinishAndDrain();

 private:
  explicit RpcTestClient(int fd);
  // The header of the next frame, which must be bulk (an Error frame is
  // returned as its Status).
  Result<protocol::BulkHeader> NextBulkFrame();
  // Reads more bytes into the decoder; Disconnected at EOF.
  Status Fill();
  // Reads exactly `size` bytes into `dst`, the decoder's first.
  Status ReadExactly(uint8_t* dst, uint64_t size);

  int fd_;
  protocol::FrameDecoder decoder_{1u << 30};
};

}  // namespace trellis::testing
