// ClientCore: the connection and arena mapping shared by a Client and by
// everything obtained from it (writers, leases). Internal to libtrellis.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "common/lease.h"
#include "common/protocol.h"
#include "trellis/client.h"
#include "trellis/object_id.h"
#include "trellis/status.h"

namespace trellis {

class ClientCore {
 public:
  using json = protocol::json;

  static Result<std::shared_ptr<ClientCore>> Connect(const std::string& path);
  ~ClientCore();

  // Sends one request and waits for its reply. Thread-safe (serialised).
  Result<json> Call(protocol::MessageType type, const json& body);
  // As Call, but returns a Reply's body undecoded: the MessagePack bytes of
  // what should be a map, not yet checked. A caller that finds them
  // malformed must Close() the connection (as Call does). Error replies
  // come back as their Status.
  Result<std::vector<uint8_t>> CallRaw(protocol::MessageType type,
                                       const json& body);
  // Tells the daemon these holds are dropped. Never blocks on another
  // thread's request: if the connection is busy the release is queued and
  // sent with (right after) the request under way, or with the next one.
  void Release(std::vector<ObjectID> ids);
  void Close();

  uint8_t* base() const { return base_; }
  uint64_t size() const { return size_; }
  uint16_t instance_id() const { return instance_id_; }
  uint64_t max_inline_blob() const { return max_inline_blob_; }
  const std::string& path() const { return path_; }

  // Maps the arena pages of [offset, offset+size) into this process's page
  // table for writing, in one system call instead of one page fault per
  // 4 KiB page while the caller writes (3-4x slower on these machines: see
  // bench/results/store_bench.md). Granules this process already populated
  // are skipped, so a warm range costs nothing. Best effort: errors (an old
  // kernel, a shortage) are ignored and the writes fault as before.
  // Thread-safe.
  void PrepareWrite(uint64_t offset, uint64_t size);

  // Unsealed blobs this client created (so writers know whether to abort).
  void AddOpenBlob(ObjectID id);
  bool TakeOpenBlob(ObjectID id);
  bool IsOpenBlob(ObjectID id);

 private:
  ClientCore() = default;
  Status WriteAll(const std::vector<uint8_t>& bytes);  // io_mutex_ held
  // Writes queued releases and one request frame.
  Status SendRequest(protocol::MessageType type,
                     const json& body);  // io_mutex_ held
  Result<protocol::Frame> ReadFrame();
  // recv(2) of what has arrived, polling briefly before blocking.
  ssize_t ReceiveSoon(uint8_t* buffer, size_t size);  // io_mutex_ held
  // The next frame, body undecoded (valid until the next read).
  Result<protocol::FrameDecoder::RawFrame> ReadRawFrame();  // io_mutex_ held
  void AppendQueuedReleases(std::vector<uint8_t>* out);
  void FlushQueuedReleases();  // io_mutex_ held
  void CloseLocked();          // io_mutex_ held

  std::string path_;
  uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  uint16_t instance_id_ = 0;
  uint64_t max_inline_blob_ = 0;

  std::mutex io_mutex_;
  int fd_ = -1;                     // guarded by io_mutex_
  protocol::FrameDecoder decoder_;  // guarded by io_mutex_
  std::vector<uint8_t> out_;        // guarded by io_mutex_

  std::mutex release_mutex_;
  std::vector<ObjectID> queued_releases_;  // guarded by release_mutex_

  std::mutex blobs_mutex_;
  std::unordered_set<ObjectID> open_blobs_;  // guarded by blobs_mutex_

  std::mutex populate_mutex_;
  // One bit per 64 KiB granule of the arena: mapped for writing already.
  std::vector<uint64_t> populated_;  // guarded by populate_mutex_
  bool populate_works_ = true;       // guarded by populate_mutex_
};

// Access to a Client's core for code of this project built on libtrellis
// (the Python binding's fast get path).
class ClientInternals {
 public:
  static const std::shared_ptr<ClientCore>& core(const Client& client) {
    return client.core_;
  }
};

// Holds a set of objects for as long as it lives.
class ClientLease final : public Lease {
 public:
  ClientLease(std::shared_ptr<ClientCore> core, std::vector<ObjectID> held)
      : core_(std::move(core)), held_(std::move(held)) {}
  ~ClientLease() override { core_->Release(std::move(held_)); }
  const uint8_t* arena_base() const override { return core_->base(); }

 private:
  std::shared_ptr<ClientCore> core_;
  std::vector<ObjectID> held_;
};

}  // namespace trellis
