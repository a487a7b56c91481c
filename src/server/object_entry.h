// ObjectEntry: what the object table keeps for one object or blob, in one
// part per job that reads it:
//
//   EntryLifecycle  the state machine and reference counts (ObjectTable)
//   EntryNode       the object's description and its cached tree (TreeCodec)
//   BlobPlacement   blobs: where the bytes are (ObjectTable's residence
//                   transitions)
//   EvictionState   blobs: what keeps the bytes in memory, and the LRU hook
//                   (EvictionPolicy)
//
// ObjectEntry inherits the parts, so a field reads as `entry.size` wherever
// the entry is used; a job that needs only its part can take that part.
// Value types: no logic beyond trivial accessors, not thread-safe.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "trellis/object_id.h"

namespace trellis::server {

using ClientId = uint64_t;
using nlohmann::json;

enum class ObjectState { kCreated, kSealed, kDeleted };
enum class Residence { kInMemory, kSpilling, kSpilled, kReloading };

struct ObjectEntry;

// What GetMeta sends for one sealed object, kept with it: an object never
// changes once sealed, except that its blobs' offsets change when they are
// reloaded from the spill directory (BlobPlacement::relocations).
struct TreeCache {
  // The distinct blobs reachable from the object, in first-visit order. Fixed
  // for the object's life: members of a visible object never change.
  std::vector<ObjectID> blobs;
  // The expanded tree encoded as MessagePack (empty: not built yet), and the
  // sum of `relocations` over `blobs` when it was built. A different sum
  // means some blob moved, so the bytes are rebuilt.
  std::vector<uint8_t> encoded;
  uint64_t relocations = 0;
};

struct EntryLifecycle {
  ObjectID id;
  ObjectState state = ObjectState::kCreated;
  ClientId creator = 0;    // who may write/seal/abort while CREATED
  uint32_t readers = 0;    // holds by clients, summed over clients
  uint32_t referrers = 0;  // live (not deleted) objects listing this as member
  bool persisted = false;
  // When it was created (blobs) or built (composites), in milliseconds of
  // the system clock since the epoch: what `trellis ls` shows as its age.
  int64_t created_ms = 0;
};

struct EntryNode {
  bool is_blob = false;
  // How deep the expanded tree of this object nests as MessagePack maps and
  // arrays (a blob: 1). Bounded by kMaxTreeNesting (tree_codec.h).
  uint8_t nesting = 0;
  std::string type_name;
  json fields;  // composite objects: user fields (a map)
  std::vector<std::pair<std::string, ObjectID>> members;
  uint64_t nbytes = 0;  // bytes of the distinct blobs reachable from here
  // Built by the first BlobsOf/GetTree/GetTreeEncoded of a visible object
  // (a cache, hence mutable); dropped when the object is deleted.
  mutable std::unique_ptr<TreeCache> tree_cache;
};

struct BlobPlacement {
  uint64_t offset = 0;  // where the bytes start in the arena (while resident)
  uint64_t size = 0;    // payload bytes
  Residence residence = Residence::kInMemory;
  uint64_t relocations = 0;  // times reloaded (to a new offset)

  // The bytes are in the arena at `offset` (a spill only reads them).
  bool resident() const {
    return residence == Residence::kInMemory ||
           residence == Residence::kSpilling;
  }
};

struct EvictionState {
  bool pinned = false;
  uint32_t transient_pins = 0;  // requests waiting to read it (see Store)
  bool in_lru = false;
  std::list<ObjectEntry*>::iterator lru_position;  // valid while in_lru
};

struct ObjectEntry : EntryLifecycle, EntryNode, BlobPlacement, EvictionState {};

}  // namespace trellis::server
