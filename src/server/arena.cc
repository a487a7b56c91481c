#include "server/arena.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

#include "common/populate.h"
#include "server/huge_tmpfs.h"

namespace trellis::server {

namespace {

constexpr const char* kThpDir = "/sys/kernel/mm/transparent_hugepage/";
constexpr const char* kShmemEnabled =
    "/sys/kernel/mm/transparent_hugepage/shmem_enabled";

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The word in [brackets] of a sysfs policy file: the one in force.
std::string Bracketed(const std::string& text) {
  size_t open = text.find('[');
  size_t close = text.find(']', open);
  if (open == std::string::npos || close == std::string::npos) return "";
  return text.substr(open + 1, close - open - 1);
}

}  // namespace

bool ShmemHugePagesOnAdvice(const std::string& top,
                            const std::string& per_size) {
  std::string policy = Bracketed(top);
  if (policy == "deny" || policy.empty()) return false;  // deny: overrides
  if (policy == "force") return true;                    // all
  std::string own = Bracketed(per_size);
  if (!own.empty() && own != "inherit") policy = own;
  return policy == "always" || policy == "within_size" || policy == "advise";
}

bool ShmemHugePagesDenied(const std::string& top) {
  return Bracketed(top) == "deny";
}

bool ShmemHugePagesOnAdvice() {
  const std::string dir = kThpDir;
  std::string pmd_bytes = ReadWholeFile(dir + "hpage_pmd_size");
  std::string per_size;
  try {
    per_size = ReadWholeFile(dir + "hugepages-" +
                             std::to_string(std::stoull(pmd_bytes) / 1024) +
                             "kB/shmem_enabled");
  } catch (...) {  // no PMD size known: the top-level policy alone
  }
  return ShmemHugePagesOnAdvice(ReadWholeFile(kShmemEnabled), per_size);
}

Result<std::unique_ptr<Arena>> Arena::Create(uint64_t size, bool reserve,
                                             bool huge_pages) {
  if (size == 0) return Status::Invalid("arena size must be positive");
  // Huge pages: a memfd where the kernel's policy gives memfds them on
  // advice, else a tmpfs of the arena's own; 4 KiB pages where neither
  // can be had (or shmem_enabled says deny).
  int fd = -1;
  if (huge_pages && !ShmemHugePagesOnAdvice() &&
      !ShmemHugePagesDenied(ReadWholeFile(kShmemEnabled))) {
    Result<UniqueFd> file = OpenHugePageTmpfsFile(size);
    if (file.ok()) {
      fd = file->Release();
    } else {
      spdlog::info("arena in 4 KiB pages: {}", file.status().message());
    }
  }
  if (fd < 0) {
    huge_pages = huge_pages && ShmemHugePagesOnAdvice();
    fd = memfd_create("trellis-arena", MFD_CLOEXEC);
    if (fd < 0) return Status::FromErrno("memfd_create", errno);
    if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
      int err = errno;
      close(fd);
      return Status::FromErrno("ftruncate arena to " + std::to_string(size),
                               err);
    }
  }
  const std::string no_reserve =
      "cannot reserve " + std::to_string(size) + " bytes of shared memory: ";
  // With huge pages the arena is reserved through the mapping below:
  // fallocate would fill it with 4 KiB pages.
  if (reserve && !huge_pages) {
    // Allocate every page up front so that a shortage is reported here, not
    // as SIGBUS on a later write.
    int rc = posix_fallocate(fd, 0, static_cast<off_t>(size));
    if (rc != 0) {
      close(fd);
      return Status::OutOfMemory(no_reserve + std::string(strerror(rc)));
    }
  }
  int flags = MAP_SHARED | (reserve && !huge_pages ? MAP_POPULATE : 0);
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, flags, fd, 0);
  if (base == MAP_FAILED) {
    int err = errno;
    close(fd);
    return Status::FromErrno("mmap arena", err);
  }
  auto* bytes = static_cast<uint8_t*>(base);
  if (huge_pages && madvise(base, size, MADV_HUGEPAGE) != 0) {
    huge_pages = false;  // a kernel built without THP
  }
  if (huge_pages && reserve) {
    Status st = PopulateForWrite(bytes, 0, size);
    if (!st.ok()) {
      munmap(base, size);
      close(fd);
      return Status::OutOfMemory(no_reserve + st.message());
    }
  }
  return std::unique_ptr<Arena>(
      new Arena(fd, bytes, size, reserve, huge_pages));
}

Arena::~Arena() {
  munmap(base_, size_);
  close(fd_);
}

Status Arena::Write(uint64_t offset, const void* data, uint64_t n) {
  if (offset > size_ || n > size_ - offset) {
    return Status::Invalid("write of " + std::to_string(n) + " bytes at " +
                           std::to_string(offset) + " overruns the arena");
  }
  if (huge_pages_ && n > 0) {
    Status populated = PopulateForWrite(base_, offset, n);
    if (populated.ok()) {
      std::memcpy(base_ + offset, data, n);
      return Status::OK();
    }
    if (!populated.IsInvalid()) return populated;
    // A kernel without MADV_POPULATE_WRITE: pwrite, as without huge pages.
  }
  const auto* from = static_cast<const uint8_t*>(data);
  while (n > 0) {
    ssize_t put = pwrite(fd_, from, n, static_cast<off_t>(offset));
    if (put < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOSPC || errno == ENOMEM) {
        return Status::OutOfMemory("no memory to back " + std::to_string(n) +
                                   " bytes of the arena at " +
                                   std::to_string(offset));
      }
      return Status::FromErrno("write to the arena", errno);
    }
    from += put;
    offset += static_cast<uint64_t>(put);
    n -= static_cast<uint64_t>(put);
  }
  return Status::OK();
}

Status Arena::Discard(uint64_t offset, uint64_t length) {
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  uint64_t begin = (offset + page - 1) / page * page;
  uint64_t end = (offset + length) / page * page;
  if (end <= begin) return Status::OK();
  if (fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                static_cast<off_t>(begin),
                static_cast<off_t>(end - begin)) != 0) {
    return Status::FromErrno("cannot discard arena pages", errno);
  }
  return Status::OK();
}

uint64_t Arena::ResidentBytes() const {
  struct stat st;
  if (fstat(fd_, &st) != 0) return 0;
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

namespace {
uint64_t ReadLimitFile(const char* path) {
  std::ifstream in(path);
  std::string text;
  if (!(in >> text) || text == "max") return UINT64_MAX;
  try {
    return std::stoull(text);
  } catch (...) {  // a malformed kernel file means "no limit known"
    return UINT64_MAX;
  }
}
}  // namespace

uint64_t UsableMemoryBytes() {
  uint64_t total = UINT64_MAX;
  long pages = sysconf(_SC_PHYS_PAGES);
  long page_size = sysconf(_SC_PAGESIZE);
  if (pages > 0 && page_size > 0) {
    total = static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size);
  }
  uint64_t v2 = ReadLimitFile("/sys/fs/cgroup/memory.max");
  uint64_t v1 = ReadLimitFile("/sys/fs/cgroup/memory/memory.limit_in_bytes");
  uint64_t limit = std::min(v1, v2);
  return std::min(total, limit);
}

}  // namespace trellis::server
