#include "client/shared_arena.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>

namespace trellis {

Result<std::unique_ptr<SharedArena>> SharedArena::Map(int fd, uint64_t size) {
  void* base =
      mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, /*offset=*/0);
  if (base == MAP_FAILED) return Status::FromErrno("mmap arena", errno);
  return std::unique_ptr<SharedArena>(
      new SharedArena(static_cast<uint8_t*>(base), size));
}

SharedArena::~SharedArena() { munmap(base_, size_); }

bool SharedArena::Populated(uint64_t granule) const {
  return populated_[granule / 64] >> (granule % 64) & 1;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14
#endif

void SharedArena::PrepareWrite(uint64_t offset, uint64_t length) {
  constexpr uint64_t kGranule = 64 * 1024;
  if (length == 0 || offset >= size_) return;
  uint64_t first = offset / kGranule;
  uint64_t last = (std::min(offset + length, size_) - 1) / kGranule;
  MutexLock lock(&populate_mutex_);
  if (!populate_works_) return;
  if (populated_.empty()) populated_.resize((size_ / kGranule + 64) / 64);
  for (uint64_t g = first; g <= last;) {
    if (Populated(g)) {
      ++g;
      continue;
    }
    uint64_t end = g;  // one madvise per run of granules not yet populated
    while (end + 1 <= last && !Populated(end + 1)) ++end;
    uint64_t begin_byte = g * kGranule;
    uint64_t end_byte = std::min((end + 1) * kGranule, size_);
    if (madvise(base_ + begin_byte, end_byte - begin_byte,
                MADV_POPULATE_WRITE) != 0) {
      if (errno == EINVAL) populate_works_ = false;  // kernel without it
      return;
    }
    for (uint64_t i = g; i <= end; ++i) populated_[i / 64] |= 1ull << (i % 64);
    g = end + 1;
  }
}

}  // namespace trellis
