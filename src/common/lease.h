// Lease: the internal side of trellis::Lease declared in trellis/object.h.
#pragma once

#include <cstdint>

#include "trellis/object_id.h"

namespace trellis {

// Keeps a set of gotten objects readable. The client subclasses it; the
// destructor of the subclass tells the daemon the objects are released.
//
// Where the bytes are is the lease's business: a client sharing the
// daemon's arena finds blob `id` at `offset` in its mapping of it; a client
// of a remote daemon (no shared arena) would keep the bytes it fetched in a
// lease that owns them. Blob, ObjectMeta::AsBlob and the typed objects only
// ask the lease, so they work unchanged with either.
class Lease {
 public:
  virtual ~Lease() = default;
  // The `size` bytes of blob `id`, which the daemon described as lying at
  // `offset` of its arena; valid while the lease lives. Null if this lease
  // cannot provide them (the range lies outside the arena).
  // Thread-safe.
  virtual const uint8_t* BlobData(ObjectID id, uint64_t offset,
                                  uint64_t size) const = 0;
};

}  // namespace trellis
