// ClientCore: the connection to a daemon shared by a Client and by
// everything obtained from it (writers, leases). Internal to libtrellis.
//
// It speaks the frame protocol over a Transport (client/transport.h), which
// moves the bytes and maps the daemon's arena. Over a transport without an
// arena (a remote daemon, TCP) the core is `remote()`: blob bytes are
// uploaded from client buffers with WriteBlob bulk frames before the
// request that seals them, and read back with ReadBlobs into buffers the
// client owns (OwnedBytes, held by an OwnedLease).
#pragma once

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
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

// A 64-byte-aligned heap buffer (numpy views of it need their dtype's
// alignment; blobs in an arena are 64-aligned too).
struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};
using OwnedBytes = std::unique_ptr<uint8_t, FreeDeleter>;
// `size` bytes (at least one, so the pointer is never null), uninitialised.
// Null if the allocation fails.
OwnedBytes AllocateOwnedBytes(uint64_t size);

class ClientCore : public std::enable_shared_from_this<ClientCore> {
 public:
  using json = protocol::json;

  // Connects to the daemon serving the UNIX socket `path` and says Hello.
  static Result<std::shared_ptr<ClientCore>> Connect(const std::string& path);
  // Says Hello over `transport` (connected, nothing sent yet) and attaches
  // it. Errors: the daemon's error reply; Invalid if the reply is malformed;
  // NotImplemented if the transport has no shared arena (remote daemons:
  // see transport.h). On error the transport is destroyed, releasing all
  // it holds (a descriptor received with a bad reply included).
  //
  // A non-empty `token` is sent in the Hello (an RPC server started with
  // --rpc-token refuses a Hello without the right one: Invalid).
  static Result<std::shared_ptr<ClientCore>> Start(
      std::unique_ptr<Transport> transport, const std::string& token = "");
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
  // Sends one request whose reply is not waited for: the next request of
  // this core reads it on its way to its own reply, and TakeDeferred
  // returns it, with `tag`. Replies come in the order of the requests, so
  // a request sent after this one is handled after it. Thread-safe.
  Status SendDeferred(protocol::MessageType type, const json& body,
                      uint64_t tag) TRELLIS_EXCLUDES(io_mutex_);
  struct DeferredReply {
    uint64_t tag;
    Result<json> reply;
  };
  // The replies of every SendDeferred request so far not yet taken, in
  // order, reading (waiting for) those not yet read. A connection that
  // fails meanwhile ends the list (the error is the caller's next call's).
  std::vector<DeferredReply> TakeDeferred() TRELLIS_EXCLUDES(io_mutex_);
  // True if a SendDeferred reply is not yet taken. Thread-safe.
  bool HasDeferred() TRELLIS_EXCLUDES(io_mutex_);
  // Tells the daemon these holds are dropped, soon: the release is queued
  // and travels with this client's next request (one send and one wake of
  // the daemon for both). A flusher thread (started on the first Release)
  // sends what no request took within kReleaseDelay; it looks at the queue
  // every kReleaseDelay while releases come, backing off to every
  // kIdlePeriod while none do, so a release reaches the daemon within
  // about kReleaseDelay, or kIdlePeriod after an idle spell. A get-and-drop
  // loop thus costs one system call per get, not two. Never blocks on a
  // request under way, never sends, never wakes a thread.
  void Release(std::vector<ObjectID> ids) TRELLIS_EXCLUDES(release_mutex_);
  static constexpr std::chrono::microseconds kReleaseDelay{1000};
  static constexpr std::chrono::microseconds kIdlePeriod{50000};
  // Closes the connection; the arena stays mapped while this core lives.
  void Close() TRELLIS_EXCLUDES(io_mutex_);

  // Uploads the bytes of the open remote blobs among `uploads` (WriteBlob
  // bulk frames from the buffers given to AddOpenBlob), then sends the
  // request and waits for its reply, all in one go under the io mutex (the
  // daemon needs no reply to the chunks). For a local core, or ids that are
  // not open remote blobs, it is Call. Thread-safe.
  Result<json> CallAfterUpload(protocol::MessageType type, const json& body,
                               const std::vector<ObjectID>& uploads)
      TRELLIS_EXCLUDES(io_mutex_, blobs_mutex_);
  // ReadBlobs {ids}: the blobs' bytes, each at its
  // protocol::ConcatenatedPositions position of one owned buffer; their
  // sizes in `*sizes`. Remote cores only (the bulk frames are a TCP
  // server's). Errors: the daemon's (ObjectNotFound, ...); Disconnected if
  // the connection fails midway (the connection is then closed);
  // OutOfMemory if the buffer cannot be allocated. Thread-safe.
  Result<std::shared_ptr<Lease>> ReadBlobs(const std::vector<ObjectID>& ids,
                                           std::vector<uint64_t>* sizes)
      TRELLIS_EXCLUDES(io_mutex_);
  // As ReadBlobs, but blob i's bytes go to dsts[i], which has room for
  // sizes[i] bytes: the sizes the caller expects (from the blobs' tree).
  // Invalid, with the connection closed, if the daemon's sizes differ.
  // The destination is written as the bytes arrive: after an error it holds
  // a part of them. Thread-safe.
  Status ReadBlobsInto(const std::vector<ObjectID>& ids,
                       const std::vector<uint64_t>& sizes,
                       const std::vector<uint8_t*>& dsts)
      TRELLIS_EXCLUDES(io_mutex_);
  // The lease for the blobs a GetMeta reply holds (`held`, in the reply's
  // order). Local: a ClientLease owning the holds. Remote: their bytes read
  // with ReadBlobs into one owned buffer (where a relocated tree's offsets
  // point), and the holds released at once. The holds are released on
  // every error. Thread-safe.
  Result<std::shared_ptr<Lease>> LeaseOfHeld(std::vector<ObjectID> held)
      TRELLIS_EXCLUDES(io_mutex_, release_mutex_);
  // The body of a GetMeta of `ids` / `names`: for a remote core with
  // relocate:true, so the tree's offsets are positions in LeaseOfHeld's
  // buffer; with `fetch`, objects of other members are copied here first.
  json GetMetaBody(const std::vector<ObjectID>& ids, bool fetch = false) const;
  json GetMetaByNameBody(const std::vector<std::string>& names,
                         bool fetch = false) const;

  // True if the daemon shares no arena with this process (a TCP client).
  bool remote() const { return arena_ == nullptr; }
  // The daemon's arena, mapped in this process; local cores only.
  // Thread-safe.
  SharedArena& arena() const { return *arena_; }
  uint8_t* base() const { return arena_ ? arena_->base() : nullptr; }
  uint64_t size() const { return arena_ ? arena_->size() : 0; }
  uint16_t instance_id() const { return instance_id_; }
  uint64_t max_inline_blob() const { return max_inline_blob_; }
  // The daemon's address (its socket path), for messages.
  const std::string& path() const { return peer_; }

  // Unsealed blobs this client created (so writers know whether to abort).
  // For a remote core, `data` is where the blob's `size` bytes are in this
  // process until it is sealed (CallAfterUpload sends them); the caller
  // keeps them valid until TakeOpenBlob.
  void AddOpenBlob(ObjectID id, const uint8_t* data = nullptr,
                   uint64_t size = 0) TRELLIS_EXCLUDES(blobs_mutex_);
  bool TakeOpenBlob(ObjectID id) TRELLIS_EXCLUDES(blobs_mutex_);
  bool IsOpenBlob(ObjectID id) TRELLIS_EXCLUDES(blobs_mutex_);

 private:
  explicit ClientCore(std::unique_ptr<Transport> transport);
  // Sends Hello, attaches the transport to the reply.
  Status Hello(const std::string& token) TRELLIS_EXCLUDES(io_mutex_);
  // Sends blob `id`'s bytes [data, data+size) as WriteBlob bulk frames.
  Status UploadLocked(ObjectID id, const uint8_t* data, uint64_t size)
      TRELLIS_REQUIRES(io_mutex_);
  // Sends ReadBlobs {ids}; returns the sizes of the blobs whose bulk frames
  // follow, in order.
  Result<std::vector<uint64_t>> StartReadBlobsLocked(
      const std::vector<ObjectID>& ids) TRELLIS_REQUIRES(io_mutex_);
  // Reads the bulk frames of blob `id` (`size` bytes) into dst.
  Status ReadBlobBytesLocked(ObjectID id, uint64_t size, uint8_t* dst)
      TRELLIS_REQUIRES(io_mutex_);
  // Reads the next bulk frame's payload (it must be bytes [done, ...) of
  // blob `id`, at most `left` of them) into dst + done; returns its size.
  Result<uint64_t> ReadBulkChunk(ObjectID id, uint64_t done, uint64_t left,
                                 uint8_t* dst) TRELLIS_REQUIRES(io_mutex_);
  // Receives more bytes into the decoder.
  Status FillLocked() TRELLIS_REQUIRES(io_mutex_);
  Result<json> CallLocked(protocol::MessageType type, const json& body)
      TRELLIS_REQUIRES(io_mutex_);
  // Reads the replies of the SendDeferred requests sent and not yet read
  // (they come before any later request's) into deferred_.
  Status ReadDeferredLocked() TRELLIS_REQUIRES(io_mutex_);
  // A reply frame as a Result: Reply's body, or Error's status (Invalid,
  // closing the connection, for any other type).
  Result<json> ReplyOf(protocol::Frame frame) TRELLIS_REQUIRES(io_mutex_);
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
  // Adds `ids` to the queue the next request (or the flusher) sends.
  void QueueReleases(const std::vector<ObjectID>& ids)
      TRELLIS_EXCLUDES(release_mutex_);
  void QueueReleasesLocked(const std::vector<ObjectID>& ids)
      TRELLIS_REQUIRES(release_mutex_);
  // The flusher thread: sends releases that have waited kReleaseDelay.
  void RunFlusher() TRELLIS_EXCLUDES(io_mutex_, release_mutex_);
  // Stops and joins the flusher.
  void StopFlusher() TRELLIS_EXCLUDES(release_mutex_);
  // pthread_atfork handlers for every live core (client.cc).
  static void BeforeFork() TRELLIS_NO_THREAD_SAFETY_ANALYSIS;
  static void AfterForkInParent() TRELLIS_NO_THREAD_SAFETY_ANALYSIS;
  static void AfterForkInChild() TRELLIS_NO_THREAD_SAFETY_ANALYSIS;
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
  // SendDeferred: the tags of the requests whose replies are not read yet,
  // and the replies read and not yet taken, both in order.
  std::vector<uint64_t> deferred_unread_ TRELLIS_GUARDED_BY(io_mutex_);
  std::vector<DeferredReply> deferred_ TRELLIS_GUARDED_BY(io_mutex_);

  Mutex release_mutex_;
  std::vector<ObjectID> queued_releases_ TRELLIS_GUARDED_BY(release_mutex_);
  // When the oldest queued release is due (set as the queue fills).
  std::chrono::steady_clock::time_point release_due_
      TRELLIS_GUARDED_BY(release_mutex_);
  // The flusher sleeps on it (woken only to stop); replaced in a forked
  // child (see BeforeFork).
  std::unique_ptr<CondVar> release_cv_ TRELLIS_GUARDED_BY(release_mutex_) =
      std::make_unique<CondVar>();
  std::thread flusher_ TRELLIS_GUARDED_BY(release_mutex_);
  bool stop_flusher_ TRELLIS_GUARDED_BY(release_mutex_) = false;

  Mutex blobs_mutex_;
  struct OpenBlob {
    const uint8_t* data = nullptr;  // remote: the bytes to upload
    uint64_t size = 0;
  };
  std::unordered_map<ObjectID, OpenBlob> open_blobs_
      TRELLIS_GUARDED_BY(blobs_mutex_);
};

// Access to a Client's core for code of this project built on libtrellis
// (the Python binding's fast get path).
class ClientInternals {
 public:
  static const std::shared_ptr<ClientCore>& core(const Client& client) {
    return client.core_;
  }
};

// Bytes a remote client read (ReadBlobs): blob offsets are positions in
// its one buffer. Holds nothing at the daemon. Thread-safe (immutable).
class OwnedLease final : public Lease {
 public:
  OwnedLease(OwnedBytes bytes, uint64_t size)
      : bytes_(std::move(bytes)), size_(size) {}
  const uint8_t* BlobData(ObjectID, uint64_t offset,
                          uint64_t size) const override {
    if (offset > size_ || size > size_ - offset) return nullptr;
    return bytes_.get() + offset;
  }
  const uint8_t* data() const { return bytes_.get(); }

 private:
  OwnedBytes bytes_;
  uint64_t size_;
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
