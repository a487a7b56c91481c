// TreeCodec: the object trees of docs/format.md as the daemon reads and
// writes them. It checks a tree that CreateObject is to build, expands a
// sealed object into the tree GetMeta sends (as JSON, or straight as
// MessagePack into the object's TreeCache), and walks the distinct blobs of
// a tree. It reads entries through EntryLookup and changes none, except the
// entries' tree caches.
//
// Not thread-safe: called from the daemon's event loop thread only.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/protocol.h"
#include "common/tree_format.h"
#include "server/object_entry.h"
#include "trellis/status.h"

namespace trellis::server {

// Deepest MessagePack nesting an expanded tree may have (EntryNode::nesting;
// common/tree_format.h says why).
using format::kMaxTreeNesting;

// The codec's view of the object table: the entry of `id`, deleted ones
// included (members of a visible object may be deleted but still
// referenced), or nullptr.
class EntryLookup {
 public:
  virtual ~EntryLookup() = default;
  virtual const ObjectEntry* FindAny(ObjectID id) const = 0;
};

using Members = std::vector<std::pair<std::string, ObjectID>>;
// Offsets to give blob nodes in place of their arena offsets (TreeCodec::
// Encode).
using BlobPositions = std::unordered_map<ObjectID, uint64_t>;

// True if `node` names an existing object, {"id": <non-zero>}; then *id is
// that id (if id is not null).
bool IsReference(const json& node, ObjectID* id = nullptr);

class TreeCodec {
 public:
  // `entries` must outlive the codec.
  TreeCodec(const EntryLookup* entries, uint16_t instance_id)
      : entries_(entries), instance_id_(instance_id) {}

  // Checks `tree` completely before CreateObject builds it for `client`
  // (docs/format.md, "building a tree"): the root is a new node, every node
  // passes format::CheckNodeShape (TreeKind::kBuilding),
  // every reference names a visible object that is sealed or is one of the
  // client's CREATED blobs, and the expanded tree nests at most
  // kMaxTreeNesting levels. Errors name the path of members to the bad
  // node: Invalid (shape, depth), ObjectNotFound (a reference to nothing),
  // NotSealed (another client's unsealed blob).
  Status Validate(ClientId client, const json& tree) const;

  // EntryNode::nesting of a new composite object with these fields and
  // members (which must exist).
  uint8_t Nesting(const json& fields, const Members& members) const;
  // The bytes of the distinct blobs reachable from `members` (a blob that
  // several members share counts once).
  uint64_t DistinctBlobBytes(const Members& members) const;

  // The cache of `entry` (built on first use, with `blobs` filled in).
  TreeCache& CacheOf(const ObjectEntry& entry) const {
    if (!entry.tree_cache) BuildCache(entry);
    return *entry.tree_cache;
  }
  // The encoded tree in `entry`'s cache, (re)built unless it was built when
  // the cache's blobs had these `relocations` in all.
  const std::vector<uint8_t>& Encoded(const ObjectEntry& entry,
                                      uint64_t relocations) const;

  // The expanded tree of `entry`: every node with typename, id, nbytes and
  // instance_id; blob nodes with their offset while in memory, composite
  // nodes with fields and members.
  json Expand(const ObjectEntry& entry) const;
  // Expand's result appended to *out as MessagePack, without building JSON.
  // The same value, though not the same bytes as json::to_msgpack of it (that
  // sorts the keys). With `positions`, a blob node's offset is its entry
  // there (every blob of the tree must have one) instead of its arena
  // offset.
  void Encode(const ObjectEntry& entry, std::vector<uint8_t>* out,
              const BlobPositions* positions = nullptr) const;

 private:
  // `budget`: the MessagePack levels the node may take.
  Status ValidateNode(ClientId client, const json& node, size_t budget) const;
  void BuildCache(const ObjectEntry& entry) const;
  // Calls visit(blob) for every distinct blob reachable from `members`, in
  // first-visit order.
  template <typename Visit>
  void ForEachBlob(const Members& members, Visit visit) const;
  const ObjectEntry& Member(ObjectID id) const;

  const EntryLookup* entries_;
  uint16_t instance_id_;
};

}  // namespace trellis::server
