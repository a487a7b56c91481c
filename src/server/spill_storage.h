// SpillStorage: where blobs go when the arena is short of memory.
//
// The seam between the daemon and the file system (in the spirit of
// LevelDB's Env): the daemon only calls this interface, so tests can inject
// failures and the directory backend stays small.
//
// Thread-safety: Write and Read are called from spill worker threads, for
// distinct ids at a time; Detach/Remove/RemoveAll from the event loop thread;
// the deleters Detach returns from any thread.
#pragma once

#include <cstdint>
#include <functional>
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
  // Forgets the copy of `id` at once (a later Write of `id` makes a new copy
  // that this never touches) and returns the work of deleting it, to run on
  // any thread: deleting a large file can take milliseconds (ext4 frees its
  // blocks, with -o discard also trims them), too long for the event loop.
  virtual std::function<void()> Detach(ObjectID id) = 0;
  // Detach(id)(), here and now.
  void Remove(ObjectID id) { Detach(id)(); }
  // Removes everything this storage wrote (daemon exit).
  virtual void RemoveAll() = 0;
};

// Spill files under `dir` (created if missing), one per blob, named after the
// blob id. Fails if the directory cannot be created or written.
Result<std::unique_ptr<SpillStorage>> MakeDirectorySpillStorage(
    const std::string& dir);

}  // namespace trellis::server
