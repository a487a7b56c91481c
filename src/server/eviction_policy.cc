#include "server/eviction_policy.h"

#include <algorithm>
#include <string>
#include <utility>

namespace trellis::server {

std::vector<size_t> CheapestRange(const std::vector<ArenaStretch>& stretches,
                                  uint64_t bytes) {
  // Two pointers over each run of adjacent stretches: for every end, the
  // window keeps the latest start that is still long enough, which is the
  // cheapest window ending there (dropping a stretch never adds cost).
  bool found = false;
  uint64_t best_cost = 0;
  size_t best_begin = 0, best_end = 0;
  size_t begin = 0;
  uint64_t length = 0, cost = 0;
  for (size_t end = 0; end < stretches.size(); ++end) {
    const ArenaStretch& s = stretches[end];
    if (end > begin &&
        stretches[end - 1].offset + stretches[end - 1].length != s.offset) {
      begin = end;  // a gap: something that stays in memory
      length = cost = 0;
    }
    length += s.length;
    if (s.spillable) cost += s.length;
    while (length - stretches[begin].length >= bytes) {
      length -= stretches[begin].length;
      if (stretches[begin].spillable) cost -= stretches[begin].length;
      ++begin;
    }
    if (length >= bytes && (!found || cost < best_cost)) {
      found = true;
      best_cost = cost;
      best_begin = begin;
      best_end = end + 1;
    }
  }
  std::vector<size_t> picked;
  if (!found) return picked;
  for (size_t i = best_begin; i < best_end; ++i) {
    if (stretches[i].spillable) picked.push_back(i);
  }
  return picked;
}

bool EvictionPolicy::Spillable(const ObjectEntry& e) {
  return e.is_blob && e.state == ObjectState::kSealed &&
         e.residence == Residence::kInMemory && e.readers == 0 && !e.pinned &&
         e.transient_pins == 0 && e.size > 0;
}

std::vector<ObjectEntry*> EvictionPolicy::ChooseOldest(uint64_t bytes) const {
  std::vector<ObjectEntry*> chosen;
  uint64_t total = 0;
  for (auto it = lru_.begin(); it != lru_.end() && total < bytes; ++it) {
    if (!Spillable(**it)) continue;
    chosen.push_back(*it);
    total += (*it)->size;
  }
  return chosen;
}

std::vector<ObjectEntry*> EvictionPolicy::ChooseRange(
    uint64_t contiguous, const Allocator& allocator) const {
  std::vector<ObjectEntry*> chosen;
  if (allocator.largest_free() >= contiguous) return chosen;
  // Free ranges and spillable blobs (null for a free range), in address
  // order.
  std::vector<std::pair<ArenaStretch, ObjectEntry*>> candidates;
  for (auto [offset, length] : allocator.FreeRanges()) {
    candidates.push_back({{offset, length, false}, nullptr});
  }
  for (ObjectEntry* e : lru_) {
    if (Spillable(*e)) {
      candidates.push_back(
          {{e->offset, Allocator::AlignedSize(e->size), true}, e});
    }
  }
  std::sort(candidates.begin(), candidates.end(),
            [](const auto& a, const auto& b) {
              return a.first.offset < b.first.offset;
            });
  std::vector<ArenaStretch> stretches;
  stretches.reserve(candidates.size());
  for (const auto& c : candidates) stretches.push_back(c.first);
  for (size_t i : CheapestRange(stretches, contiguous)) {
    chosen.push_back(candidates[i].second);
  }
  return chosen;
}

Result<std::vector<ObjectEntry*>> EvictionPolicy::ChooseNamed(
    const std::vector<ObjectEntry*>& blobs) {
  for (const ObjectEntry* e : blobs) {
    if (e->residence != Residence::kInMemory) continue;
    if (e->readers > 0) {
      return Status::Invalid("cannot evict blob " + e->id.ToString() +
                             ": it is held by " + std::to_string(e->readers) +
                             " reader(s)");
    }
    if (e->pinned || e->transient_pins > 0) {
      return Status::Invalid("cannot evict blob " + e->id.ToString() +
                             ": it is pinned");
    }
  }
  std::vector<ObjectEntry*> chosen;
  for (ObjectEntry* e : blobs) {
    if (Spillable(*e)) chosen.push_back(e);  // not empty, not on its way
  }
  return chosen;
}

}  // namespace trellis::server
