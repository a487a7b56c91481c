// Arena: the shared-memory region (one memfd, or one unlinked file on a
// huge-page tmpfs of its own) that holds every blob.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "trellis/status.h"

namespace trellis::server {

class Arena {
 public:
  // Creates a shared-memory file of `size` bytes and maps it read-write.
  // With `reserve`, every page is allocated and faulted in now (slow start,
  // fast first writes); IOError/OutOfMemory when the memory cannot be had.
  // With `huge_pages`, the arena is filled with 2 MiB pages where the kernel
  // allows it: a memfd mapped MADV_HUGEPAGE if the shmem THP policy honours
  // that (ShmemHugePagesOnAdvice), else an unlinked file on a tmpfs of its
  // own mounted with huge=within_size (OpenHugePageTmpfsFile), unless the
  // policy is deny or the mount cannot be made (then 4 KiB pages, logged).
  // A process reading a fresh object then takes one first touch per 2 MiB
  // instead of one per 4 KiB (on a VM with shadow paging ~6 us each:
  // bench/results/small_frames.md). huge_pages() tells whether that is so;
  // clients map the arena the same way (Hello reply).
  static Result<std::unique_ptr<Arena>> Create(uint64_t size, bool reserve,
                                               bool huge_pages = false);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  int fd() const { return fd_; }
  uint8_t* base() const { return base_; }
  uint64_t size() const { return size_; }
  bool reserved() const { return reserved_; }
  bool huge_pages() const { return huge_pages_; }

  // Copies `n` bytes to [offset, offset+n) through the memfd (pwrite), not
  // through the mapping: the kernel writes the pages via its own map, so
  // this process takes no page fault per new page (on a VM with shadow
  // paging that is ~10 us a 4 KiB page, see bench/results/small_frames.md),
  // and a page the memory cannot back is OutOfMemory here, not a SIGBUS
  // later. With huge pages, the range is populated through the mapping
  // (MADV_POPULATE_WRITE: a pwrite would allocate 4 KiB pages) and copied
  // through it. The range must lie inside the arena.
  Status Write(uint64_t offset, const void* data, uint64_t n);
  // Returns the pages wholly inside [offset, offset+length) to the OS; they
  // read as zeros and fault in afresh when next written.
  Status Discard(uint64_t offset, uint64_t length);
  // Bytes of the arena currently backed by memory.
  uint64_t ResidentBytes() const;

 private:
  Arena(int fd, uint8_t* base, uint64_t size, bool reserved, bool huge_pages)
      : fd_(fd),
        base_(base),
        size_(size),
        reserved_(reserved),
        huge_pages_(huge_pages) {}

  int fd_;
  uint8_t* base_;
  uint64_t size_;
  bool reserved_;
  bool huge_pages_;
};

// True if the kernel gives shared memory (memfd) transparent huge pages of
// the PMD size to a mapping that asks with MADV_HUGEPAGE: the policy in
// /sys/kernel/mm/transparent_hugepage/shmem_enabled (and, on kernels with
// per-size policies, hugepages-<PMD size>kB/shmem_enabled) is always,
// within_size, advise or force. Debian's default, never, is false.
bool ShmemHugePagesOnAdvice();
// True if shmem_enabled's contents `top` say deny: no huge pages on any
// shared memory, tmpfs mounts included (the kernel's emergency off).
bool ShmemHugePagesDenied(const std::string& top);
// The same decision as ShmemHugePagesOnAdvice() from the policy files' contents
// (the bracketed word is the one in force; `per_size` is empty on kernels
// without per-size files).
bool ShmemHugePagesOnAdvice(const std::string& top,
                            const std::string& per_size);

// Bytes of physical memory this process may use: the smaller of MemTotal and
// the cgroup (v2 or v1) memory limit, if any.
uint64_t UsableMemoryBytes();

}  // namespace trellis::server
