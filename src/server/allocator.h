// Allocator: hands out 64-byte-aligned ranges of the shared arena.
//
// Written by hand because no library allocator keeps its bookkeeping outside
// the memory it manages: a general-purpose malloc stores headers next to the
// blocks, where a client scribbling past its buffer would corrupt the daemon.
// Here all state lives in daemon-private std::map/std::set.
//
// Policy: best fit with immediate coalescing. Ranges that were handed out
// before ("touched": their pages are already faulted in) are preferred over the
// never-touched part of the arena, because faulting fresh shared pages costs
// 20-40x more than writing to touched ones on these machines.
//
// Not thread-safe: the owner serialises calls.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "trellis/status.h"

namespace trellis::server {

class Allocator {
 public:
  static constexpr uint64_t kAlignment = 64;

  // Manages [0, capacity); capacity is rounded down to the alignment.
  explicit Allocator(uint64_t capacity);

  // Rounds `size` up to the alignment. Reserved bytes of an allocation.
  static uint64_t AlignedSize(uint64_t size) {
    return (size + kAlignment - 1) & ~(kAlignment - 1);
  }

  // Returns the offset of a free range of at least `size` (> 0) bytes, or
  // OutOfMemory saying how much was asked and what is free.
  Result<uint64_t> Allocate(uint64_t size);
  // Returns a range obtained from Allocate(size) with the same size.
  void Free(uint64_t offset, uint64_t size);
  // Gives back the tail of a range obtained from Allocate(size): it then
  // holds `new_size` bytes (0 < new_size <= size) and is freed with
  // Free(offset, new_size).
  void Shrink(uint64_t offset, uint64_t size, uint64_t new_size);

  uint64_t capacity() const { return capacity_; }
  uint64_t used() const { return used_; }
  uint64_t free_bytes() const { return capacity_ - used_; }
  uint64_t largest_free() const;
  // Bytes at the start of the arena that have ever been handed out.
  uint64_t high_water() const { return high_water_; }
  size_t free_range_count() const { return by_offset_.size(); }
  // The free ranges as (offset, length), in address order.
  std::vector<std::pair<uint64_t, uint64_t>> FreeRanges() const;

 private:
  void InsertFree(uint64_t offset, uint64_t length);
  void EraseFree(std::map<uint64_t, uint64_t>::iterator it);

  uint64_t capacity_;
  uint64_t used_ = 0;
  uint64_t high_water_ = 0;
  std::map<uint64_t, uint64_t> by_offset_;             // offset -> length
  std::set<std::pair<uint64_t, uint64_t>> by_length_;  // (length, offset)
};

}  // namespace trellis::server
