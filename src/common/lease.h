// Lease: the internal side of trellis::Lease declared in trellis/object.h.
#pragma once

#include <cstdint>

namespace trellis {

// Keeps a set of gotten objects readable. The client subclasses it; the
// destructor of the subclass tells the daemon the objects are released.
class Lease {
 public:
  virtual ~Lease() = default;
  // Start of this process's mapping of the arena the leased blobs live in.
  virtual const uint8_t* arena_base() const = 0;
};

}  // namespace trellis
