// FakeSpillStorage: SpillStorage in memory that fails on command, in place of
// a directory on a disk that fills up or breaks (no tmpfs, no root).
//
// A "disk" of `capacity` bytes: a Write that does not fit in what is left
// fails as a full disk does (IOError "... No space left on device") and
// leaves nothing behind. Detach forgets a copy at once, but its bytes stay on
// the disk until the returned deleter runs, as with a real file being
// unlinked on a worker. Writes, reads and deleters run wherever the store's
// run_in_background runs them: with a ManualExecutor, when the test says,
// which is how a slow write is made (the test completes it later).
//
// Not thread-safe (the state is shared with the deleters, which may outlive
// the storage): one test thread.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "server/spill_storage.h"

namespace trellis::testing {

class FakeSpillStorage final : public server::SpillStorage {
 public:
  explicit FakeSpillStorage(
      uint64_t capacity = std::numeric_limits<uint64_t>::max());

  std::string location() const override { return "fake-disk"; }
  Status Write(ObjectID id, const uint8_t* data, uint64_t size) override;
  Status Read(ObjectID id, uint8_t* data, uint64_t size) override;
  std::function<void()> Detach(ObjectID id) override;
  void RemoveAll() override;

  // --- failures on command ---
  // The next `n` writes fail as on a full disk.
  void FailNextWrites(size_t n);
  // Reads of `id` fail with an I/O error until ClearReadFailure(id).
  void FailReadsOf(ObjectID id);
  void ClearReadFailure(ObjectID id);
  void set_capacity(uint64_t capacity);

  // --- what is on the disk ---
  // Whether a copy of `id` is stored (and not detached).
  bool Has(ObjectID id) const;
  size_t copies() const;  // stored, not detached
  // Bytes taken on the disk: stored copies and detached copies whose
  // deleters have not run yet.
  uint64_t used_bytes() const;
  size_t writes() const;  // successful writes
  size_t reads() const;   // successful reads
  size_t failed_writes() const;

 private:
  struct Copy {
    ObjectID id;
    std::vector<uint8_t> bytes;
  };
  struct Disk {
    uint64_t capacity;
    uint64_t used = 0;
    uint64_t next_copy = 1;
    std::map<uint64_t, Copy> copies;        // every copy on the disk
    std::map<ObjectID, uint64_t> attached;  // id -> its current copy
    size_t fail_writes = 0;
    std::set<ObjectID> failing_reads;
    size_t writes = 0, reads = 0, failed_writes = 0;
  };
  static void Erase(Disk& disk, uint64_t copy);

  std::shared_ptr<Disk> disk_;
};

}  // namespace trellis::testing
