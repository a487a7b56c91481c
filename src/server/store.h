// Store: the transport-independent core of trellisd. It owns the arena, the
// allocator, the object table, the metadata store and the spill storage, and
// executes decoded requests (docs/protocol.md) on behalf of clients.
//
// Not thread-safe: every call, and every callback it makes, happens on the
// daemon's event loop thread. Time and background work are injected
// (StoreHooks), so the loop never blocks on disk I/O: spills and reloads run
// on worker threads and finish on the loop.
//
// Memory pressure: a request that needs arena memory (CreateBlobs, PutBlobs,
// a reload) and does not fit waits while least recently used unheld blobs
// are spilled, then is retried; when nothing more can be spilled it fails at
// once with OutOfMemory saying what was asked, what is free and what readers
// hold. Above the high watermark, blobs are spilled in the background down to
// the low watermark.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>

#include "server/allocator.h"
#include "server/arena.h"
#include "server/meta_store.h"
#include "server/object_table.h"
#include "server/spill_storage.h"
#include "trellis/status.h"

namespace trellis::server {

struct StoreOptions {
  uint64_t size = 0;
  bool reserve = false;
  uint16_t instance_id = 1;
  // Largest payload a PutBlobs request may carry per blob.
  uint64_t max_inline_blob = 1u << 20;
  // Watermarks, as fractions of `size` (used only with spill storage).
  double spill_high = 0.9;
  double spill_low = 0.7;
};

struct StoreHooks {
  // Runs `fn` on the loop after `delay`.
  std::function<void(std::chrono::milliseconds, std::function<void()>)>
      run_after;
  // Runs `work` on a worker thread, then `done` on the loop.
  std::function<void(std::function<void()> work, std::function<void()> done)>
      run_in_background;
};

class Store {
 public:
  using Done = std::function<void(Result<json>)>;

  // `spill` may be null (no spilling); `spill_error` then says why, if a
  // spill directory was asked for but unusable.
  static Result<std::unique_ptr<Store>> Create(
      const StoreOptions& options, std::unique_ptr<MetaStore> meta,
      std::unique_ptr<SpillStorage> spill, std::string spill_error,
      StoreHooks hooks);
  ~Store();

  const Arena& arena() const { return *arena_; }
  uint16_t instance_id() const { return table_.instance_id(); }

  // Registers a new client and returns its id.
  ClientId Connect();
  // Drops everything the client held or was writing, and its waiters.
  void Disconnect(ClientId client);
  // The body of the Hello reply for `client`.
  json HelloReply(ClientId client) const;

  // Executes one request of `type` (any request but Hello). Calls `done`
  // exactly once with the reply body or an error, possibly later (a GetName
  // that waits, a request waiting for memory or a reload), except for
  // Release, which has no reply and never calls it. `done` is not called
  // after Disconnect(client).
  void Handle(ClientId client, uint16_t type, const json& body, Done done);

  // Where bytes [offset, offset + size) of a CREATED blob of `client` are
  // in the arena, for a transport that writes them there (WriteBlob bulk
  // frames). Valid until the blob is sealed or aborted or the client
  // disconnects. ObjectNotFound if `id` is no blob; Invalid if it is not
  // being written by this client (sealed, or another client's) or the range
  // is not within its size.
  Result<uint8_t*> WritableRange(ClientId client, ObjectID id, uint64_t offset,
                                 uint64_t size);

 private:
  struct Waiter {
    uint64_t waiter_id;
    ClientId client;
    std::string name;
    Done done;
  };
  using WaiterList = std::list<Waiter>;
  // What a request allocates: `total` aligned bytes, the largest single
  // allocation `largest` of them (which needs one free range).
  struct MemoryNeed {
    uint64_t total;
    uint64_t largest;
  };
  static MemoryNeed NeedOf(const std::vector<uint64_t>& sizes);
  // A request waiting for memory. `attempt` does the request's work and
  // returns false, having changed nothing, if the memory is still short.
  struct PendingAlloc {
    MemoryNeed need;
    std::function<bool()> attempt;
    std::function<void(Status)> fail;
  };

  Store(const StoreOptions& options, std::unique_ptr<Arena> arena,
        std::unique_ptr<MetaStore> meta, std::unique_ptr<SpillStorage> spill,
        std::string spill_error, StoreHooks hooks);

  void CreateBlobs(ClientId client, const json& body, Done done);
  void PutBlobs(ClientId client, const json& body, Done done);
  Result<json> CreateObject(ClientId client, const json& body);
  void GetMeta(ClientId client, const json& body, Done done);
  // The objects bound to the body's "names" (GetMeta by name), or
  // ObjectNotFound naming the first unbound one.
  Result<std::vector<ObjectID>> IdsOfNames(const json& body) const;
  void GetBlobs(ClientId client, const json& body, Done done);
  Result<json> PutName(const json& body);
  void GetName(ClientId client, const json& body, Done done);
  Result<json> ListNames(const json& body);
  Result<json> Delete(const json& body);
  Result<json> Persist(const json& body);
  Result<json> ListObjects(const json& body);
  void Pin(ClientId client, const json& body, Done done);
  void Evict(const json& body, Done done);
  Result<json> MemoryTrim();
  json StatusReply() const;
  Status BindName(const std::string& name, ObjectID id, bool overwrite);
  void OnNameBound(const std::string& name, ObjectID id);

  // --- memory pressure ---
  void WithMemory(MemoryNeed need, std::function<bool()> attempt,
                  std::function<void(Status)> fail);
  // Retries waiting requests in order. When the head still does not fit:
  // with `may_spill`, starts spilling for it; otherwise fails everything
  // still waiting with OutOfMemory(`reason`).
  void PumpPending(bool may_spill = true, const std::string& reason = "");
  void FailPending(const std::string& reason);
  void SpillAboveHighWatermark();
  // Starts copying `job` to spill storage; `then` (optional) gets the result.
  void LaunchSpill(const SpillJob& job, std::function<void(Status)> then);
  void OnSpillDone(const SpillJob& job, Status written,
                   std::function<void(Status)> then);
  // Drops the spill copy of `blob` (deleting the file off the loop).
  void DropSpillFile(ObjectID blob);
  // Calls `then` once every blob reachable from `ids` is in memory (or with
  // the first error). The blobs stay in memory until `then` returns.
  void EnsureResident(const std::vector<ObjectID>& ids,
                      std::function<void(Status)> then);
  void RequestReload(ObjectID blob, std::function<void(Status)> then);
  void FinishReloadWaiters(ObjectID blob, const Status& status);
  Status OutOfMemory(uint64_t bytes, const std::string& reason) const;

  StoreOptions options_;
  std::unique_ptr<Arena> arena_;
  Allocator allocator_;
  ObjectTable table_;
  std::unique_ptr<MetaStore> meta_;
  std::unique_ptr<SpillStorage> spill_;  // null: spilling off
  std::string spill_error_;              // why spilling is off or last failure
  StoreHooks hooks_;
  ClientId next_client_ = 1;
  uint64_t next_waiter_ = 1;
  WaiterList waiters_;

  std::deque<PendingAlloc> pending_;
  uint64_t spills_in_flight_ = 0;
  uint64_t spill_bytes_in_flight_ = 0;
  bool spill_failed_in_round_ = false;
  // Spill files being deleted by workers. Until they are gone their disk
  // space is not free, so a spill that failed meanwhile is retried after.
  uint64_t file_deletes_in_flight_ = 0;
  bool retry_after_deletes_ = false;
  std::unordered_map<ObjectID, std::vector<std::function<void(Status)>>>
      reload_waiters_;
  struct Counters {
    uint64_t spills = 0, spilled_bytes = 0, spill_failures = 0;
    uint64_t reloads = 0, reloaded_bytes = 0, reload_failures = 0;
    uint64_t out_of_memory = 0, trimmed_bytes = 0;
  } counters_;
};

}  // namespace trellis::server
