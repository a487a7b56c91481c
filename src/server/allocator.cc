#include "server/allocator.h"

#include <cassert>
#include <string>

namespace trellis::server {

Allocator::Allocator(uint64_t capacity)
    : capacity_(capacity & ~(kAlignment - 1)) {
  if (capacity_ > 0) InsertFree(0, capacity_);
}

void Allocator::InsertFree(uint64_t offset, uint64_t length) {
  by_offset_.emplace(offset, length);
  by_length_.emplace(length, offset);
}

void Allocator::EraseFree(std::map<uint64_t, uint64_t>::iterator it) {
  by_length_.erase({it->second, it->first});
  by_offset_.erase(it);
}

Result<uint64_t> Allocator::Allocate(uint64_t size) {
  assert(size > 0);
  uint64_t need = AlignedSize(size);
  if (need < size) return Status::OutOfMemory("allocation size overflows");
  auto fit = by_length_.lower_bound({need, 0});
  if (fit == by_length_.end()) {
    return Status::OutOfMemory("arena cannot hold " + std::to_string(size) +
                               " bytes: " + std::to_string(free_bytes()) +
                               " of " + std::to_string(capacity_) +
                               " bytes free, largest free range " +
                               std::to_string(largest_free()));
  }
  // The best fit may reach into never-touched pages; prefer the next larger
  // range if it lies wholly in touched memory. Everything above high_water_
  // is one free range (the tail), so at most one candidate is skipped.
  if (fit->second + need > high_water_) {
    for (auto alt = std::next(fit); alt != by_length_.end(); ++alt) {
      if (alt->second + need <= high_water_) {
        fit = alt;
        break;
      }
    }
  }
  uint64_t offset = fit->second;
  uint64_t length = fit->first;
  EraseFree(by_offset_.find(offset));
  if (length > need) InsertFree(offset + need, length - need);
  used_ += need;
  if (offset + need > high_water_) high_water_ = offset + need;
  return offset;
}

void Allocator::Free(uint64_t offset, uint64_t size) {
  uint64_t length = AlignedSize(size);
  assert(offset % kAlignment == 0 && offset + length <= capacity_);
  used_ -= length;
  auto next = by_offset_.lower_bound(offset);
  assert(next == by_offset_.end() || next->first >= offset + length);
  if (next != by_offset_.end() && next->first == offset + length) {
    length += next->second;
    auto after = std::next(next);
    EraseFree(next);
    next = after;
  }
  if (next != by_offset_.begin()) {
    auto prev = std::prev(next);
    assert(prev->first + prev->second <= offset);
    if (prev->first + prev->second == offset) {
      offset = prev->first;
      length += prev->second;
      EraseFree(prev);
    }
  }
  InsertFree(offset, length);
}

void Allocator::Shrink(uint64_t offset, uint64_t size, uint64_t new_size) {
  assert(new_size > 0 && new_size <= size);
  uint64_t kept = AlignedSize(new_size);
  uint64_t tail = AlignedSize(size) - kept;
  if (tail > 0) Free(offset + kept, tail);
}

uint64_t Allocator::largest_free() const {
  return by_length_.empty() ? 0 : by_length_.rbegin()->first;
}

std::vector<std::pair<uint64_t, uint64_t>> Allocator::FreeRanges() const {
  return {by_offset_.begin(), by_offset_.end()};
}

}  // namespace trellis::server
