// Arena: the shared-memory region (one memfd) that holds every blob.
#pragma once

#include <cstdint>
#include <memory>

#include "trellis/status.h"

namespace trellis::server {

class Arena {
 public:
  // Creates a memfd of `size` bytes and maps it read-write. With `reserve`,
  // every page is allocated and faulted in now (slow start, fast first
  // writes); IOError/OutOfMemory when the memory cannot be had.
  static Result<std::unique_ptr<Arena>> Create(uint64_t size, bool reserve);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  int fd() const { return fd_; }
  uint8_t* base() const { return base_; }
  uint64_t size() const { return size_; }
  bool reserved() const { return reserved_; }

  // Copies `n` bytes to [offset, offset+n) through the memfd (pwrite), not
  // through the mapping: the kernel writes the pages via its own map, so
  // this process takes no page fault per new page (on a VM with shadow
  // paging that is ~10 us a 4 KiB page, see bench/results/small_frames.md),
  // and a page the memory cannot back is OutOfMemory here, not a SIGBUS
  // later. The range must lie inside the arena.
  Status Write(uint64_t offset, const void* data, uint64_t n);
  // Returns the pages wholly inside [offset, offset+length) to the OS; they
  // read as zeros and fault in afresh when next written.
  Status Discard(uint64_t offset, uint64_t length);
  // Bytes of the arena currently backed by memory.
  uint64_t ResidentBytes() const;

 private:
  Arena(int fd, uint8_t* base, uint64_t size, bool reserved)
      : fd_(fd), base_(base), size_(size), reserved_(reserved) {}

  int fd_;
  uint8_t* base_;
  uint64_t size_;
  bool reserved_;
};

// Bytes of physical memory this process may use: the smaller of MemTotal and
// the cgroup (v2 or v1) memory limit, if any.
uint64_t UsableMemoryBytes();

}  // namespace trellis::server
