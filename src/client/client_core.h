// ClientCore: the connection to a daemon shared by a Client and by
// everything obtained from it (writers, leases). Internal to libtrellis.
//
// It speaks the frame protocol over a Transport (client/transport.h), which
// moves the bytes and maps the daemon's arena.
#pragma once

#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "client/shared_arena.h"
#include "client/transport.h"
#include "common/lease.h"
#include "common/mutex.h"
#include "common/protocol.h"
#include "trellis/client.h"
#include "trellis/object_id.h"
#include "trellis/status.h"

namespace trellis {

class ClientCore {
 public:
  using json = protocol::json;

  // Connects to the daemon serving the UNIX socket `path` and says Hello.
  static Result<std::shared_ptr<ClientCore>> Connect(const std::string& path);
  // Says Hello over `transport` (connected, nothing sent yet) and attaches
  // it. Errors: the daemon's error reply; Invalid if the reply is malformed;
  // NotImplemented if the transport has no shared arena (remote daemons:
  // see transport.h). On error the transport is destroyed, releasing all
  // it holds (a descriptor received with a bad reply included).
  static Result<std::shared_ptr<ClientCore>> Start(
      std::unique_ptr<Transport> transport);
  ~ClientCore();

  // Sends one request and waits for its reply. Thread-safe (serialised).
  Result<json> Call(protocol::MessageType type, const json& body)
      TRELLIS_EXCLUDES(io_mutex_);
  // As Call, but returns a Reply's body undecoded: the MessagePack bytes of
  // what should be a map, not yet checked. A caller that finds them
  // malformed must Close() the connection (as Call does). Error replies
  // come back as their Status.
  Result<std::vector<uint8_t>> CallRaw(protocol::MessageType type,
                                       const json& body)
      TRELLIS_EXCLUDES(io_mutex_);
  // Tells the daemon these holds are dropped. Never blocks on another
  // thread's request: if the connection is busy the release is queued and
  // sent with (right after) the request under way, or with the next one.
  void Release(std::vector<ObjectID> ids)
      TRELLIS_EXCLUDES(io_mutex_, release_mutex_);
  // Closes the connection; the arena stays mapped while this core lives.
  void Close() TRELLIS_EXCLUDES(io_mutex_);

  // The daemon's arena, mapped in this process. Thread-safe.
  SharedArena& arena() const { return *arena_; }
  uint8_t* base() const { return arena_->base(); }
  uint64_t size() const { return arena_->size(); }
  uint16_t instance_id() const { return instance_id_; }
  uint64_t max_inline_blob() const { return max_inline_blob_; }
  // The daemon's address (its socket path), for messages.
  const std::string& path() const { return peer_; }

  // Unsealed blobs this client created (so writers know whether to abort).
  void AddOpenBlob(ObjectID id) TRELLIS_EXCLUDES(blobs_mutex_);
  bool TakeOpenBlob(ObjectID id) TRELLIS_EXCLUDES(blobs_mutex_);
  bool IsOpenBlob(ObjectID id) TRELLIS_EXCLUDES(blobs_mutex_);

 private:
  explicit ClientCore(std::unique_ptr<Transport> transport);
  // Sends Hello, attaches the transport to the reply.
  Status Hello() TRELLIS_EXCLUDES(io_mutex_);
  Result<json> CallLocked(protocol::MessageType type, const json& body)
      TRELLIS_REQUIRES(io_mutex_);
  // Writes queued releases and one request frame.
  Status SendRequest(protocol::MessageType type, const json& body)
      TRELLIS_REQUIRES(io_mutex_);
  // Sends bytes; closes the connection if that fails.
  Status SendLocked(const std::vector<uint8_t>& bytes)
      TRELLIS_REQUIRES(io_mutex_);
  Result<protocol::Frame> ReadFrame() TRELLIS_REQUIRES(io_mutex_);
  // The next frame, body undecoded (valid until the next read).
  Result<protocol::FrameDecoder::RawFrame> ReadRawFrame()
      TRELLIS_REQUIRES(io_mutex_);
  void AppendQueuedReleases(std::vector<uint8_t>* out)
      TRELLIS_EXCLUDES(release_mutex_);
  void FlushQueuedReleases() TRELLIS_REQUIRES(io_mutex_);
  void CloseLocked() TRELLIS_REQUIRES(io_mutex_);

  // Set before Start returns, constant afterwards.
  const std::string peer_;
  SharedArena* arena_ = nullptr;  // owned by the transport
  uint16_t instance_id_ = 0;
  uint64_t max_inline_blob_ = 0;

  Mutex io_mutex_;
  const std::unique_ptr<Transport> transport_ TRELLIS_PT_GUARDED_BY(io_mutex_);
  bool closed_ TRELLIS_GUARDED_BY(io_mutex_) = false;
  protocol::FrameDecoder decoder_ TRELLIS_GUARDED_BY(io_mutex_);
  std::vector<uint8_t> out_ TRELLIS_GUARDED_BY(io_mutex_);

  Mutex release_mutex_;
  std::vector<ObjectID> queued_releases_ TRELLIS_GUARDED_BY(release_mutex_);

  Mutex blobs_mutex_;
  std::unordered_set<ObjectID> open_blobs_ TRELLIS_GUARDED_BY(blobs_mutex_);
};

// Access to a Client's core for code of this project built on libtrellis
// (the Python binding's fast get path).
class ClientInternals {
 public:
  static const std::shared_ptr<ClientCore>& core(const Client& client) {
    return client.core_;
  }
};

// Holds a set of objects for as long as it lives; their bytes are in the
// core's arena.
class ClientLease final : public Lease {
 public:
  ClientLease(std::shared_ptr<ClientCore> core, std::vector<ObjectID> held)
      : core_(std::move(core)), held_(std::move(held)) {}
  ~ClientLease() override { core_->Release(std::move(held_)); }
  const uint8_t* BlobData(ObjectID, uint64_t offset,
                          uint64_t size) const override {
    return core_->arena().Range(offset, size);
  }

 private:
  std::shared_ptr<ClientCore> core_;
  std::vector<ObjectID> held_;
};

}  // namespace trellis
