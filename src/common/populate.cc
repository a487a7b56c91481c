#include "common/populate.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14
#endif

namespace trellis {

Status PopulateForWrite(uint8_t* base, uint64_t offset, uint64_t n) {
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  uint64_t begin = offset / page * page;
  uint64_t end = (offset + n + page - 1) / page * page;
  if (madvise(base + begin, end - begin, MADV_POPULATE_WRITE) == 0) {
    return Status::OK();
  }
  if (errno == EINVAL) return Status::Invalid("no MADV_POPULATE_WRITE");
  if (errno == ENOMEM || errno == EFAULT || errno == EHWPOISON) {
    return Status::OutOfMemory("no memory to back " + std::to_string(n) +
                               " bytes at " + std::to_string(offset));
  }
  return Status::FromErrno("populate pages for writing", errno);
}

}  // namespace trellis
