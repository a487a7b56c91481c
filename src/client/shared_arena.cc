#include "client/shared_arena.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/populate.h"
#include "trellis/client.h"  // ParallelMemcpy

namespace trellis {

Result<std::unique_ptr<SharedArena>> SharedArena::Map(int fd, uint64_t size,
                                                      bool huge_pages) {
  void* base =
      mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, /*offset=*/0);
  if (base == MAP_FAILED) return Status::FromErrno("mmap arena", errno);
  // The daemon checked that the kernel honours it; if this one refuses,
  // reads still work, in 4 KiB mappings.
  if (huge_pages && madvise(base, size, MADV_HUGEPAGE) != 0) huge_pages = false;
  // Without a duplicate (out of descriptors), Write copies through the map.
  int own_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  return std::unique_ptr<SharedArena>(
      new SharedArena(static_cast<uint8_t*>(base), size, own_fd, huge_pages));
}

SharedArena::~SharedArena() {
  munmap(base_, size_);
  if (fd_ >= 0) close(fd_);
}

bool SharedArena::AllPopulated(uint64_t offset, uint64_t n) {
  constexpr uint64_t kGranule = 64 * 1024;
  MutexLock lock(&populate_mutex_);
  if (populated_.empty()) return false;
  for (uint64_t g = offset / kGranule; g <= (offset + n - 1) / kGranule; ++g) {
    if (!Populated(g)) return false;
  }
  return true;
}

void SharedArena::Write(uint64_t offset, const void* src, uint64_t n) {
  if (n == 0) return;
  if (n > kPwriteMax || fd_ < 0 || huge_pages_ || AllPopulated(offset, n)) {
    if (n > kPwriteMax || huge_pages_) PrepareWrite(offset, n);
    ParallelMemcpy(base_ + offset, src, n);
    return;
  }
  // Through a bounce buffer of this thread's: the source is often bytes
  // the caller just made, which the kernel has never touched, and on such
  // a VM its first touch of a page (pwrite reading it) costs as much as
  // ours; the bounce buffer is warm for both, and copying into it is a
  // plain memcpy.
  constexpr uint64_t kBounce = 256 * 1024;
  thread_local std::vector<uint8_t> bounce;
  if (bounce.size() < kBounce) bounce.resize(kBounce);
  const auto* from = static_cast<const uint8_t*>(src);
  while (n > 0) {
    uint64_t chunk = std::min(n, kBounce);
    std::memcpy(bounce.data(), from, chunk);
    uint64_t done = 0;
    while (done < chunk) {
      ssize_t put = pwrite(fd_, bounce.data() + done, chunk - done,
                           static_cast<off_t>(offset + done));
      if (put < 0 && errno == EINTR) continue;
      if (put <= 0) {
        // Whatever failed (a shortage of memory to back the pages, most
        // likely), the copy through the map does what it always did.
        std::memcpy(base_ + offset, from, n);
        return;
      }
      done += static_cast<uint64_t>(put);
    }
    from += chunk;
    offset += chunk;
    n -= chunk;
  }
}

bool SharedArena::Populated(uint64_t granule) const {
  return populated_[granule / 64] >> (granule % 64) & 1;
}

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
    Status populated =
        PopulateForWrite(base_, begin_byte, end_byte - begin_byte);
    if (!populated.ok()) {
      if (populated.IsInvalid()) populate_works_ = false;  // kernel without it
      return;
    }
    for (uint64_t i = g; i <= end; ++i) populated_[i / 64] |= 1ull << (i % 64);
    g = end + 1;
  }
}

}  // namespace trellis
