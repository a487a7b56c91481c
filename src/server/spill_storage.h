// SpillStorage: where blobs go when the arena is short of memory.
//
// The seam between the daemon and the file system (in the spirit of
// LevelDB's Env): the daemon only calls this interface, so tests can inject
// failures and the directory backend stays small.
//
// Thread-safety: Write and Read are called from spill worker threads, for
// distinct ids at a time; Remove/RemoveAll from the event loop thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "trellis/object_id.h"
#include "trellis/status.h"

namespace trellis::server {

class SpillStorage {
 public:
  virtual ~SpillStorage() = default;
  // A description for logs and status, e.g. the directory.
  virtual std::string location() const = 0;
  // Stores `size` bytes for `id`, replacing any earlier copy. IOError naming
  // the file and the reason (e.g. "No space left on device") on failure, in
  // which case nothing is left behind.
  virtual Status Write(ObjectID id, const uint8_t* data, uint64_t size) = 0;
  // Reads back exactly `size` bytes written for `id`.
  virtual Status Read(ObjectID id, uint8_t* data, uint64_t size) = 0;
  virtual void Remove(ObjectID id) = 0;
  // Removes everything this storage wrote (daemon exit).
  virtual void RemoveAll() = 0;
};

// Spill files under `dir` (created if missing), one per blob, named after the
// blob id. Fails if the directory cannot be created or written.
Result<std::unique_ptr<SpillStorage>> MakeDirectorySpillStorage(
    const std::string& dir);

}  // namespace trellis::server
