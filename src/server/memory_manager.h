// MemoryManager: the arena under memory pressure. Decides when blobs are
// spilled to SpillStorage and reloaded from it, and makes requests that need
// arena memory wait for spills instead of failing.
//
// Contract
// * WithMemory(need, attempt, fail) calls `attempt` at once. `attempt` does
//   the request's work and returns true, or returns false having changed
//   nothing because the memory is still short. On false the request waits
//   in a FIFO queue while unheld, unpinned blobs are spilled for it (the
//   fewest bytes that make a free range for its largest blob, then the least
//   recently used: ObjectTable::StartSpillsFor), and `attempt` is called
//   again after every spill round, oldest request first: one that still
//   does not fit holds back those behind it. (A new request that fits at
//   once is served at once.)
//   Exactly one of these ends a request: `attempt` returning true, or one
//   call of `fail` with OutOfMemory saying what was asked, what is free,
//   what readers hold and why nothing more can be done:
//     - without spill storage, at once ("the arena is full");
//     - when nothing more can be spilled ("nothing more can be spilled");
//     - when a spill write failed in the round ("spilling failed: <the
//       storage's error>"), for every request still waiting; what fits in
//       the memory freed by the round's successful spills goes ahead, and the
//       next request spills afresh. If spill files were being deleted when
//       the write failed, the round is retried once those deletes are done
//       (perhaps the disk was only short of the space they free).
// * After a request is served, and after every spill round, blobs are
//   spilled in the background while usage is above the high watermark, down
//   to the low watermark. After a round in which a write failed, this waits
//   for the next request (no loop of failing writes against a full disk).
// * EnsureResident(ids, then) calls `then` once every blob reachable from
//   the visible objects `ids` is in memory, or with the first error (the
//   lookup's ObjectNotFound/NotSealed, OutOfMemory when a reload does not
//   fit, the storage's IOError when a spill copy cannot be read; that blob
//   stays spilled). The blobs are kept in memory (transiently pinned) until
//   `then` returns. Concurrent requests for one spilled blob share one
//   reload.
// * Evict(ids, done) spills the blobs of `ids` now and reports the bytes
//   written (Invalid if spilling is off or a blob is held or pinned).
// * A spilled blob that is freed has its spill copy forgotten at once and
//   deleted off the loop (the manager registers itself with the table for
//   this).
// * An object is dropped from memory only once its spill copy is written:
//   a failed write loses nothing, a failed read leaves the blob spilled.
//
// Threading: not thread-safe. Every call, and every callback it makes, is on
// the daemon's loop thread; only SpillStorage::Write/Read and the deletion of
// spill files run as the `work` of run_in_background, whose `done` brings the
// result back to the loop. The owner must ensure no background work runs
// once the manager is destroyed (trellisd joins its worker pool first).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "server/allocator.h"
#include "server/arena.h"
#include "server/object_table.h"
#include "server/spill_storage.h"
#include "trellis/status.h"

namespace trellis::server {

// Runs `work` on a worker thread, then `done` on the loop thread.
using RunInBackground =
    std::function<void(std::function<void()> work, std::function<void()> done)>;

// What a request allocates: `total` aligned bytes, the largest single
// allocation `largest` of them (which needs one free range).
struct MemoryNeed {
  uint64_t total = 0;
  uint64_t largest = 0;
  static MemoryNeed Of(const std::vector<uint64_t>& sizes);
};

struct MemoryOptions {
  // Watermarks, as fractions of the arena (used only with spill storage).
  double spill_high = 0.9;
  double spill_low = 0.7;
};

struct MemoryCounters {
  uint64_t spills = 0, spilled_bytes = 0, spill_failures = 0;
  uint64_t reloads = 0, reloaded_bytes = 0, reload_failures = 0;
  uint64_t out_of_memory = 0;
};

class MemoryManager {
 public:
  // `arena`, `allocator` and `table` must outlive the manager. `spill` may
  // be null (spilling off); `spill_error` then says why, if spilling was
  // asked for but is unusable.
  MemoryManager(MemoryOptions options, Arena* arena, Allocator* allocator,
                ObjectTable* table, std::unique_ptr<SpillStorage> spill,
                std::string spill_error, RunInBackground run_in_background);
  MemoryManager(const MemoryManager&) = delete;
  MemoryManager& operator=(const MemoryManager&) = delete;

  void WithMemory(MemoryNeed need, std::function<bool()> attempt,
                  std::function<void(Status)> fail);
  void EnsureResident(const std::vector<ObjectID>& ids,
                      std::function<void(Status)> then);
  void Evict(const std::vector<ObjectID>& ids,
             std::function<void(Result<uint64_t>)> done);

  // OutOfMemory for `bytes`, with `reason` and the arena's figures.
  Status OutOfMemory(uint64_t bytes, const std::string& reason) const;

  bool spill_enabled() const { return spill_ != nullptr; }
  // Why spilling is off, or the last spill failure ("" if none).
  const std::string& spill_error() const { return spill_error_; }
  const MemoryCounters& counters() const { return counters_; }
  size_t waiting_requests() const { return pending_.size(); }
  uint64_t spills_in_flight() const { return spills_in_flight_; }
  const MemoryOptions& options() const { return options_; }
  // Where spilled bytes go ("" with spilling off).
  std::string spill_location() const;

 private:
  // A request waiting for memory (see WithMemory).
  struct PendingAlloc {
    MemoryNeed need;
    std::function<bool()> attempt;
    std::function<void(Status)> fail;
  };

  // Retries waiting requests in order. When the head still does not fit:
  // with `may_spill`, starts spilling for it; otherwise fails everything
  // still waiting with OutOfMemory(`reason`).
  void PumpPending(bool may_spill = true, const std::string& reason = "");
  void FailPending(const std::string& reason);
  void SpillAboveHighWatermark();
  // Starts copying `job` to spill storage; `then` (optional) gets the result.
  void LaunchSpill(const SpillJob& job, std::function<void(Status)> then);
  void OnSpillDone(const SpillJob& job, Status written,
                   const std::function<void(Status)>& then);
  // Drops the spill copy of `blob` (deleting the file off the loop).
  void DropSpillFile(ObjectID blob);
  void RequestReload(ObjectID blob, std::function<void(Status)> then);
  // The reload's `attempt`: starts reading `blob` back if memory allows.
  bool StartReload(ObjectID blob);
  void OnReloadDone(const SpillJob& job, const Status& read);
  void FinishReloadWaiters(ObjectID blob, const Status& status);

  const MemoryOptions options_;
  Arena* const arena_;
  Allocator* const allocator_;
  ObjectTable* const table_;
  std::unique_ptr<SpillStorage> spill_;  // null: spilling off
  std::string spill_error_;              // why spilling is off or last failure
  const RunInBackground run_in_background_;

  std::deque<PendingAlloc> pending_;
  uint64_t spills_in_flight_ = 0;
  uint64_t spill_bytes_in_flight_ = 0;
  bool spill_failed_in_round_ = false;
  // A round failed: no background spills until the next request.
  bool background_paused_ = false;
  // Spill files being deleted by workers. Until they are gone their disk
  // space is not free, so a spill that failed meanwhile is retried after.
  uint64_t file_deletes_in_flight_ = 0;
  bool retry_after_deletes_ = false;
  std::unordered_map<ObjectID, std::vector<std::function<void(Status)>>>
      reload_waiters_;
  MemoryCounters counters_;
};

}  // namespace trellis::server
