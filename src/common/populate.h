// PopulateForWrite: fault a range of a shared mapping in for writing in one
// system call (MADV_POPULATE_WRITE), for the daemon's arena and a client's
// mapping of it alike.
#pragma once

#include <cstdint>

#include "trellis/status.h"

namespace trellis {

// Faults the pages of [offset, offset+n) of the mapping at `base` in for
// writing (the range rounded out to whole pages; it must lie inside the
// mapping): OutOfMemory if memory cannot back them (where a write would
// SIGBUS), Invalid if the kernel has no MADV_POPULATE_WRITE (Linux < 5.14),
// IOError otherwise. In a MADV_HUGEPAGE mapping the kernel fills a fresh
// 2 MiB stretch with one huge page.
Status PopulateForWrite(uint8_t* base, uint64_t offset, uint64_t n);

}  // namespace trellis
