// EvictionPolicy: which blobs to spill when the arena is short.
//
// It keeps the sealed in-memory blobs in least-recently-used order and
// chooses victims among them; it changes no entry's state. The object table
// (its owner) adds a blob when it is sealed or back in memory, touches it on
// every get, removes it when it starts spilling or is deleted, and starts the
// spills the policy chooses. An entry must be removed before it is
// destroyed: the order holds pointers to entries.
//
// Not thread-safe: called from the daemon's event loop thread only.
#pragma once

#include <cstdint>
#include <list>
#include <vector>

#include "server/allocator.h"
#include "server/object_entry.h"
#include "trellis/status.h"

namespace trellis::server {

// A stretch of the arena in address order: free, or a blob that may be
// spilled (both can be made part of one free range).
struct ArenaStretch {
  uint64_t offset;
  uint64_t length;  // as allocated (aligned)
  bool spillable;
};

// The indices of the spillable stretches in the cheapest run of adjacent
// stretches (each beginning where the one before ends) at least `bytes`
// long: cheapest means fewest spillable bytes, then lowest offset. Empty if
// no run is long enough, or if free stretches alone are. `stretches` must be
// sorted by offset and must not overlap. O(n).
std::vector<size_t> CheapestRange(const std::vector<ArenaStretch>& stretches,
                                  uint64_t bytes);

class EvictionPolicy {
 public:
  // True if the blob's memory may be given up now: a sealed, non-empty blob
  // in memory that no reader holds and nothing pins.
  static bool Spillable(const ObjectEntry& e);

  // Appends a blob in memory to the order as the most recently used (no-op
  // for composite objects, blobs not in memory, and blobs already there).
  // Allocates one list node.
  void Add(ObjectEntry& e) {
    if (!e.is_blob || e.in_lru || e.residence != Residence::kInMemory) return;
    e.lru_position = lru_.insert(lru_.end(), &e);
    e.in_lru = true;
  }
  // Takes a blob out of the order (no-op if it is not in it).
  void Remove(ObjectEntry& e) {
    if (!e.in_lru) return;
    lru_.erase(e.lru_position);
    e.in_lru = false;
  }
  // Makes a blob in the order the most recently used. O(1), allocation-free.
  void Touch(ObjectEntry& e) {
    if (e.in_lru) lru_.splice(lru_.end(), lru_, e.lru_position);
  }

  // Spillable blobs, least recently used first, until their sizes reach
  // `bytes` (all spillable blobs if they do not).
  std::vector<ObjectEntry*> ChooseOldest(uint64_t bytes) const;
  // For one allocation of `contiguous` bytes: if no free range of
  // `allocator` is that long, the spillable blobs that together with the
  // free ranges around them form one, at the fewest bytes (CheapestRange),
  // in address order. Empty if a free range is long enough already, or if
  // no such run exists.
  std::vector<ObjectEntry*> ChooseRange(uint64_t contiguous,
                                        const Allocator& allocator) const;
  // The blobs of `blobs` to spill when a client asks for exactly these:
  // the spillable ones, in the given order. Blobs not in memory (spilled or
  // on their way) are skipped; Invalid naming the blob if one in memory is
  // held or pinned (then nothing is chosen).
  static Result<std::vector<ObjectEntry*>> ChooseNamed(
      const std::vector<ObjectEntry*>& blobs);

  size_t size() const { return lru_.size(); }

 private:
  // Blobs in memory, least recently used first.
  std::list<ObjectEntry*> lru_;
};

}  // namespace trellis::server
