// SharedArena: this process's mapping of a daemon's arena (the memfd the
// daemon passed with its Hello reply). Internal to libtrellis.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "common/mutex.h"
#include "trellis/status.h"

namespace trellis {

class SharedArena {
 public:
  // Maps `size` bytes of the arena file `fd`, shared and read-write, and
  // keeps a duplicate of fd for Write. The caller keeps (and may close) fd.
  // `huge_pages`: the daemon's arena is in transparent huge pages (its Hello
  // reply says): the mapping asks for them too (MADV_HUGEPAGE), so that a
  // read of a fresh object maps 2 MiB at once, and Write goes through it.
  // IOError if mmap fails.
  static Result<std::unique_ptr<SharedArena>> Map(int fd, uint64_t size,
                                                  bool huge_pages = false);
  ~SharedArena();  // unmaps: nothing may point into the arena any more
  SharedArena(const SharedArena&) = delete;
  SharedArena& operator=(const SharedArena&) = delete;

  uint8_t* base() const { return base_; }
  uint64_t size() const { return size_; }
  // base() + offset if [offset, offset+length) lies inside the arena, else
  // null.
  uint8_t* Range(uint64_t offset, uint64_t length) const {
    if (offset > size_ || length > size_ - offset) return nullptr;
    return base_ + offset;
  }

  // Maps the arena pages of [offset, offset+length) into this process's
  // page table for writing, in one system call instead of one page fault
  // per 4 KiB page while the caller writes (3-4x slower on these machines:
  // see bench/results/store_bench.md). Granules this process already
  // populated are skipped, so a warm range costs nothing. Best effort:
  // errors (an old kernel, a shortage) are ignored and the writes fault as
  // before. Thread-safe.
  void PrepareWrite(uint64_t offset, uint64_t length)
      TRELLIS_EXCLUDES(populate_mutex_);

  // Copies `n` bytes from `src` to arena offset `offset` (the range lies
  // inside the arena: Range() checked it) the cheapest way: memcpy through
  // the mapping where this process has written those granules before; a
  // pwrite to the arena file for a range up to kPwriteMax it has not (the
  // kernel copies through its own map: no page fault here, where a first
  // touch costs ~10 us a page on a VM with shadow paging; see
  // bench/results/small_frames.md); beyond that PrepareWrite, then a
  // parallel memcpy. With huge pages, always PrepareWrite and memcpy (a
  // pwrite would fill a fresh 2 MiB stretch with 4 KiB pages). Thread-safe.
  static constexpr uint64_t kPwriteMax = 4u << 20;
  void Write(uint64_t offset, const void* src, uint64_t n)
      TRELLIS_EXCLUDES(populate_mutex_);

 private:
  SharedArena(uint8_t* base, uint64_t size, int fd, bool huge_pages)
      : base_(base), size_(size), fd_(fd), huge_pages_(huge_pages) {}
  bool Populated(uint64_t granule) const TRELLIS_REQUIRES(populate_mutex_);
  // True if every granule of [offset, offset+n) is populated.
  bool AllPopulated(uint64_t offset, uint64_t n)
      TRELLIS_EXCLUDES(populate_mutex_);

  uint8_t* const base_;
  const uint64_t size_;
  const int fd_;  // our duplicate of the arena file, or -1
  const bool huge_pages_;

  Mutex populate_mutex_;
  // One bit per 64 KiB granule of the arena: mapped for writing already.
  std::vector<uint64_t> populated_ TRELLIS_GUARDED_BY(populate_mutex_);
  bool populate_works_ TRELLIS_GUARDED_BY(populate_mutex_) = true;
};

}  // namespace trellis
