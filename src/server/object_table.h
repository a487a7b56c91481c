// ObjectTable: every object and blob of one daemon, and the one state machine
// that governs them:
//
//   CREATED --Seal--> SEALED --Delete--> DELETED --(no readers, no
//   referrers)--> freed
//      \--Abort / creator disconnects--> freed
//
// * A blob is CREATED by CreateBlobs: its bytes are writable by its creator
//   only, invisible to others. Seal makes it immutable and readable.
// * A composite object is created sealed by CreateObject from a tree whose
//   members are new nodes or existing objects; the creator's CREATED blobs
//   referenced by the tree are sealed in the same step.
// * Readers hold blobs (Hold/Release, counted per client); getting a
//   composite object holds the distinct blobs of its tree, since only blobs
//   own memory. A held blob that is deleted (itself, or with a container by
//   a deep delete) disappears from lookups at once, but its bytes stay intact
//   until the last reader releases it or disconnects: never a use-after-free.
// * A member is referenced by the live objects that contain it. Deleting a
//   referenced object needs force; it then also stays in memory (invisible)
//   until its referrers are gone, so they keep reading correct bytes.
//
// Transport-agnostic and not thread-safe: the daemon calls it from its event
// loop thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "server/allocator.h"
#include "trellis/object_id.h"
#include "trellis/status.h"

namespace trellis::server {

using ClientId = uint64_t;
using nlohmann::json;

enum class ObjectState { kCreated, kSealed, kDeleted };
enum class Residence { kInMemory, kSpilling, kSpilled, kReloading };

// What GetMeta sends for one sealed object, kept with it: an object never
// changes once sealed, except that its blobs' offsets change when they are
// reloaded from the spill directory (`relocations` below).
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

struct ObjectEntry {
  ObjectID id;
  ObjectState state = ObjectState::kCreated;
  bool is_blob = false;
  uint64_t offset = 0;  // blobs: where the bytes start in the arena
  uint64_t size = 0;    // blobs: payload bytes
  std::string type_name;
  json fields;  // composite objects: user fields (a map)
  std::vector<std::pair<std::string, ObjectID>> members;
  uint64_t nbytes = 0;     // bytes of the distinct blobs reachable from here
  ClientId creator = 0;    // who may write/seal/abort while CREATED
  uint32_t readers = 0;    // holds by clients, summed over clients
  uint32_t referrers = 0;  // live (not deleted) objects listing this as member
  bool persisted = false;
  // Blobs only: where the bytes are, and what keeps them in memory.
  Residence residence = Residence::kInMemory;
  bool pinned = false;
  uint32_t transient_pins = 0;  // requests waiting to read it (see Store)
  bool in_lru = false;
  std::list<ObjectID>::iterator lru_position;  // valid while in_lru
  uint64_t relocations = 0;  // blobs: times reloaded (to a new offset)
  // Built by the first BlobsOf/GetTree/GetTreeEncoded of a visible object
  // (a cache, hence mutable); dropped when the object is deleted.
  mutable std::unique_ptr<TreeCache> tree_cache;

  bool resident() const {
    return residence == Residence::kInMemory ||
           residence == Residence::kSpilling;
  }
};

struct BlobSlot {
  ObjectID id;
  uint64_t offset;
  uint64_t size;
};

// A copy to make between the arena and spill storage.
struct SpillJob {
  ObjectID id;
  uint64_t offset;
  uint64_t size;
};

// A stretch of the arena in address order: free, or a blob that may be
// spilled (both can be made part of one free range).
struct ArenaStretch {
  uint64_t offset;
  uint64_t length;  // as allocated (aligned)
  bool spillable;
};

// The indices of the spillable stretches in the cheapest run of adjacent
// stretches (each beginning where the one before ends) at least `bytes`
// long: cheapest means fewest spillable bytes, then lowest offset. Empty if
// no run is long enough, or if free stretches alone are. `stretches` must be
// sorted by offset and must not overlap. O(n).
std::vector<size_t> CheapestRange(const std::vector<ArenaStretch>& stretches,
                                  uint64_t bytes);

struct TableStats {
  uint64_t objects = 0;  // sealed, visible composite objects
  uint64_t blobs = 0;    // sealed, visible blobs
  uint64_t unsealed_blobs = 0;
  uint64_t deleted_pending = 0;  // deleted but still read or referenced
  uint64_t held_bytes = 0;       // blob bytes in memory held by readers
  uint64_t pinned_bytes = 0;     // blob bytes pinned in memory
  uint64_t spilled_blobs = 0;
  uint64_t spilled_bytes = 0;
};

class ObjectTable {
 public:
  // `allocator` must outlive the table.
  ObjectTable(Allocator* allocator, uint16_t instance_id);

  void AddClient(ClientId client);
  // Aborts the client's unsealed blobs and drops all its holds.
  void RemoveClient(ClientId client);
  size_t client_count() const { return clients_.size(); }
  bool HasClient(ClientId client) const { return clients_.count(client) > 0; }

  // Allocates one CREATED blob per size (all or nothing). Size 0 is allowed.
  Result<std::vector<BlobSlot>> CreateBlobs(ClientId client,
                                            const std::vector<uint64_t>& sizes);
  // Seals blobs the client created. All ids are checked before any is sealed.
  Status Seal(ClientId client, const std::vector<ObjectID>& ids);
  // Frees blobs the client created and did not seal.
  Status Abort(ClientId client, const std::vector<ObjectID>& ids);

  // Creates the composite objects of `tree` (docs/format.md, "building a
  // tree"), sealing the client's CREATED blobs it references. Returns the
  // root's id. The tree is validated completely before anything changes.
  Result<ObjectID> CreateObject(ClientId client, const json& tree);

  // The expanded tree of a visible, sealed object (blob nodes carry their
  // arena offset). With `held`, every distinct blob reachable from it is held
  // once for the client and its id appended to *held; composite nodes own no
  // memory and are not held (a reader's bytes are safe while it holds the
  // blobs). With `held`, all those blobs must be in memory (IOError if not;
  // nothing is held then).
  Result<json> GetTree(ClientId client, ObjectID id,
                       std::vector<ObjectID>* held);
  // As GetTree with `held`, but appends the tree to *out already encoded as
  // MessagePack. The encoding is built once per object and reused (objects
  // are immutable once sealed; it is rebuilt if a blob was reloaded to a new
  // offset), so a repeated get costs a copy plus one hold per blob.
  Status GetTreeEncoded(ClientId client, ObjectID id, std::vector<uint8_t>* out,
                        std::vector<ObjectID>* held);
  // A visible, sealed blob, held once for the client.
  Result<BlobSlot> GetBlob(ClientId client, ObjectID id);
  // Drops one hold per id (ids the client does not hold are Invalid; those
  // before the bad one are released).
  Status Release(ClientId client, const std::vector<ObjectID>& ids);

  // Deletes visible objects (docs/protocol.md, "Delete"). Returns every id
  // that became DELETED, including members removed by `deep`.
  Result<std::vector<ObjectID>> Delete(const std::vector<ObjectID>& ids,
                                       bool deep, bool force);
  Status Persist(ObjectID id);

  // The shallow description {id, typename, nbytes, ...} of visible sealed
  // objects whose type name matches the glob `pattern` (blobs only if the
  // pattern matches kBlobTypeName), at most `limit`.
  std::vector<json> List(const std::string& pattern, size_t limit) const;
  // The entry of a visible object, or nullptr.
  const ObjectEntry* Find(ObjectID id) const;

  TableStats Stats() const;
  uint16_t instance_id() const { return instance_id_; }

  // --- memory pressure --------------------------------------------------
  // Called with the id of a spilled blob whose spill copy is no longer
  // needed (the blob was freed). Set once by the owner.
  void SetSpillFileDropper(std::function<void(ObjectID)> dropper) {
    drop_spill_file_ = std::move(dropper);
  }
  // Picks least recently used spillable blobs (sealed, in memory, unheld,
  // unpinned) until their sizes reach `bytes`, marks them SPILLING and
  // returns the copies to make.
  std::vector<SpillJob> StartSpills(uint64_t bytes);
  // Makes room for one allocation of `contiguous` bytes, then for `bytes` in
  // all: if no free range is that long, spills the spillable blobs that
  // together with free ranges around them form one, choosing the fewest
  // bytes (CheapestRange); then tops up with StartSpills. A large put into
  // a fragmented arena thus spills what it needs, not whatever is oldest.
  std::vector<SpillJob> StartSpillsFor(uint64_t contiguous, uint64_t bytes);
  // Marks the named blobs' resident bytes (whole subtrees for composite
  // objects) for spilling now. Invalid naming the blob if one is held or
  // pinned; blobs already spilled or on their way are skipped.
  Result<std::vector<SpillJob>> StartEvictions(
      const std::vector<ObjectID>& ids);
  // Ends a spill. Returns true if the spill copy is now the only copy (the
  // memory was freed); false if the caller should drop the copy (the write
  // failed, or the blob was gotten, pinned or deleted meanwhile).
  bool FinishSpill(ObjectID id, bool written);
  // Allocates memory for a SPILLED blob and marks it RELOADING.
  // OutOfMemory if the arena cannot hold it now.
  Result<SpillJob> StartReload(ObjectID id);
  // Ends a reload: with `read`, the blob is in memory again (the caller drops
  // the spill copy); otherwise its memory is freed and it stays SPILLED.
  void FinishReload(ObjectID id, bool read);
  // The blobs reachable from the visible objects `ids` (each blob once).
  Result<std::vector<ObjectID>> BlobsOf(const std::vector<ObjectID>& ids) const;
  // A residence query for a blob that may have been freed meanwhile.
  const ObjectEntry* FindAny(ObjectID id) const;
  // Transient pins keep blobs in memory while a request gathers them.
  void AddTransientPin(ObjectID blob);
  void RemoveTransientPin(ObjectID blob);
  // Pins or unpins every blob reachable from the visible objects `ids`.
  Status SetPinned(const std::vector<ObjectID>& ids, bool pinned);

 private:
  struct ClientState {
    std::unordered_set<ObjectID> created;          // unsealed blobs
    std::unordered_map<ObjectID, uint32_t> holds;  // id -> count
  };

  ObjectID NextId() { return ObjectID::Make(instance_id_, next_sequence_++); }
  ObjectEntry* FindVisible(ObjectID id);
  Status ValidateTree(ClientId client, const json& node, int depth) const;
  ObjectID BuildTree(ClientId client, const json& node);
  uint64_t DistinctBlobBytes(
      const std::vector<std::pair<std::string, ObjectID>>& members) const;
  json ExpandTree(const ObjectEntry& entry) const;
  // ExpandTree's result written straight as MessagePack (no DOM).
  void EncodeTree(const ObjectEntry& entry, std::vector<uint8_t>* out) const;
  // A visible, sealed object, or ObjectNotFound/NotSealed.
  Result<ObjectEntry*> FindSealed(ObjectID id);
  // The cache of a visible object, with `blobs` filled in.
  TreeCache& CacheOf(const ObjectEntry& entry) const;
  // Holds every blob of `cache` for the client, after checking that all are
  // in memory; returns the sum of their relocations.
  Result<uint64_t> HoldBlobs(ClientId client, ObjectID id,
                             const TreeCache& cache,
                             std::vector<ObjectID>* held);
  void Hold(ClientState& state, ObjectEntry& entry);
  void MarkDeleted(ObjectEntry& entry, bool deep, bool force,
                   std::vector<ObjectID>* deleted);
  void DetachMembers(ObjectEntry& entry, bool deep, bool force,
                     std::vector<ObjectID>* deleted);
  void FreeIfUnused(ObjectID id);
  void FreeBlobMemory(ObjectEntry& entry);
  bool Spillable(const ObjectEntry& e) const;
  void LruInsert(ObjectEntry& e);
  void LruRemove(ObjectEntry& e);
  // Marks a spillable blob SPILLING (out of the LRU) and returns its copy.
  SpillJob StartSpill(ObjectEntry& e);
  void LruTouch(ObjectEntry& e);

  Allocator* allocator_;
  uint16_t instance_id_;
  uint64_t next_sequence_ = 1;
  std::unordered_map<ObjectID, ObjectEntry> entries_;
  std::unordered_map<ClientId, ClientState> clients_;
  // Sealed in-memory blobs, least recently used first.
  std::list<ObjectID> lru_;
  std::function<void(ObjectID)> drop_spill_file_;
};

}  // namespace trellis::server
