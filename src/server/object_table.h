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
// A sealed blob's residence (ObjectEntry::residence) is a second state of
// the same machine, changed by the spill calls on the arrows:
//
//                StartSpills / StartSpillsFor / StartEvictions
//   IN MEMORY ----------------------------------------------> SPILLING
//     ^   ^                                                   |    |
//     |   '-- FinishSpill(failed; or gotten, pinned or -------'    |
//     |            deleted meanwhile: the copy is dropped)         |
//     |                                       FinishSpill(written) |
//     | FinishReload(read)                    (range freed)        v
//   RELOADING <-------------- StartReload (new range) -------- SPILLED
//     '------------- FinishReload(failed; range freed) ------------^
//
// * Blobs start IN MEMORY (CREATED ones never leave it). IN MEMORY and
//   SPILLING blobs are resident: their bytes are in the arena at `offset`
//   (a spill only reads them), so they can be held; a get of an object with
//   SPILLED blobs waits for their reload. Only unheld, unpinned IN MEMORY
//   blobs are chosen for spilling (EvictionPolicy::Spillable).
// * SPILLED: the spill copy is the only copy; the arena range is free.
// * RELOADING: the bytes are being read into a new range, so the offset
//   changes (trees cached with the old one are re-encoded).
// * Freed (deleted, no readers, no referrers): at once when IN MEMORY or
//   SPILLED (the spill file dropper drops the copy); when SPILLING or
//   RELOADING, by FinishSpill/FinishReload once the copy has ended.
//
// The table is the one owner of these states. Two parts work for it and
// change no state themselves: TreeCodec (tree_codec.h) checks, expands and
// encodes trees, reading entries through EntryLookup; EvictionPolicy
// (eviction_policy.h) keeps the LRU order and chooses what to spill.
//
// Transport-agnostic and not thread-safe: the daemon calls it from its event
// loop thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "server/allocator.h"
#include "server/eviction_policy.h"
#include "server/object_entry.h"
#include "server/tree_codec.h"
#include "trellis/object_id.h"
#include "trellis/status.h"

namespace trellis::server {

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

class ObjectTable final : public EntryLookup {
 public:
  // `allocator` must outlive the table.
  ObjectTable(Allocator* allocator, uint16_t instance_id);
  ObjectTable(const ObjectTable&) = delete;  // the codec points at it
  ObjectTable& operator=(const ObjectTable&) = delete;

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
  // Shortens an unsealed blob the client created to `size` bytes (1 up to
  // its size), freeing the rest: a spare blob (Store::CreateObject) that
  // held more than the put needed. ObjectNotFound if `id` is not such a
  // blob, Invalid for a size out of range.
  Status Trim(ClientId client, ObjectID id, uint64_t size);

  // Creates the composite objects of `tree` (docs/format.md, "building a
  // tree"), sealing the client's CREATED blobs it references. Returns the
  // root's id. The tree is validated completely before anything changes
  // (TreeCodec::Validate; among others, Invalid if its expanded tree would
  // nest too deep for a GetMeta reply to carry).
  // With a valid `as`, the root gets that id: it must be the id reserved for
  // this client (ReserveId) and the root a composite node (Invalid
  // otherwise); the reservation is used up.
  Result<ObjectID> CreateObject(ClientId client, json tree,
                                ObjectID as = ObjectID());

  // --- reserved ids: a put that does not wait for its reply -------------
  // The id the client's next CreateObject may give its root (`as`), so the
  // client knows it before the daemon has read that request (docs/
  // protocol.md, "Spare blobs"). One per client: while it is unused, the
  // same id is returned. Dropped with the client.
  ObjectID ReserveId(ClientId client);
  // The client an unused reserved id belongs to, or 0.
  ClientId ReservedBy(ObjectID id) const {
    auto it = reserved_by_.find(id);
    return it == reserved_by_.end() ? 0 : it->second;
  }
  bool has_reservations() const { return !reserved_by_.empty(); }

  // --- replicas: copies of objects another instance created (a fetch) ---
  // They keep their ids (an id names one object cluster-wide; its top bits
  // say which instance made it), so a replica is found by the same id and
  // names as the original.
  //
  // As CreateBlobs, with the blobs' ids given: each must be another
  // instance's id (Invalid) and not here yet, nor listed twice
  // (ObjectExists).
  Result<std::vector<BlobSlot>> CreateReplicaBlobs(
      ClientId client, const std::vector<std::pair<ObjectID, uint64_t>>& blobs);
  // Creates the composite objects of `tree`, an expanded tree as GetMeta
  // returns it (docs/format.md, "The tree"), keeping its ids. A node whose
  // id is here already (a sealed object, or one of the client's CREATED
  // blobs, which is sealed) is used as it is; every other node must be a
  // composite of another instance. So the blobs are made first with
  // CreateReplicaBlobs and written, then this makes the objects. Checked
  // completely before anything changes: Invalid (shape, depth, an id of
  // this instance that is not here), ObjectNotFound (a blob not copied),
  // NotSealed (another client's unsealed blob), ObjectExists (an id deleted
  // here and still being released). Returns the root's id.
  Result<ObjectID> CreateReplica(ClientId client, const json& tree);

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
  // As GetTreeEncoded, for a reader that reads the blobs it holds into one
  // buffer (ReadBlobs over TCP, laid out as protocol::ConcatenatedPositions
  // of all of *held): each blob node's offset is the blob's position in that
  // buffer. `*end` is the layout's size so far (0 before the first tree) and
  // is advanced past this tree's blobs. Encoded afresh (not cached).
  Status GetTreeRelocated(ClientId client, ObjectID id,
                          std::vector<uint8_t>* out,
                          std::vector<ObjectID>* held, uint64_t* end);
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
  // A fresh id of this instance for an object kept outside the table (a
  // global object, which lives in the MetaStore only). Never reused.
  ObjectID IssueId() { return NextId(); }

  // --- memory pressure --------------------------------------------------
  // Called with the id of a spilled blob whose spill copy is no longer
  // needed (the blob was freed). Set once by the owner.
  void SetSpillFileDropper(std::function<void(ObjectID)> dropper) {
    drop_spill_file_ = std::move(dropper);
  }
  // Picks least recently used spillable blobs (sealed, in memory, unheld,
  // unpinned: EvictionPolicy::ChooseOldest) until their sizes reach `bytes`,
  // marks them SPILLING and returns the copies to make.
  std::vector<SpillJob> StartSpills(uint64_t bytes);
  // Makes room for one allocation of `contiguous` bytes, then for `bytes` in
  // all: if no free range is that long, spills the spillable blobs that
  // together with free ranges around them form one, choosing the fewest
  // bytes (EvictionPolicy::ChooseRange); then tops up with StartSpills. A large
  // put into a fragmented arena thus spills what it needs, not whatever is
  // oldest.
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
  // A residence query for a blob that may have been freed meanwhile: the
  // entry of `id`, deleted ones included, or nullptr.
  const ObjectEntry* FindAny(ObjectID id) const override;
  // Transient pins keep blobs in memory while a request gathers them.
  void AddTransientPin(ObjectID blob);
  void RemoveTransientPin(ObjectID blob);
  // Pins or unpins every blob reachable from the visible objects `ids`.
  Status SetPinned(const std::vector<ObjectID>& ids, bool pinned);

 private:
  struct ClientState {
    std::unordered_set<ObjectID> created;          // unsealed blobs
    std::unordered_map<ObjectID, uint32_t> holds;  // id -> count
    ObjectID reserved;                             // ReserveId's, unused
  };

  ObjectID NextId() { return ObjectID::Make(instance_id_, next_sequence_++); }
  ObjectEntry* FindVisible(ObjectID id);
  // Seals a blob the client created (CREATED -> SEALED).
  void SealBlob(ClientState& state, ObjectEntry& blob);
  // Builds a validated node, moving its fields and typename out; a
  // composite node gets id `as` if valid, else a fresh one.
  ObjectID BuildTree(ClientId client, json& node, ObjectID as = ObjectID());
  // Allocates the blobs (id, size), all or nothing, CREATED for `client`.
  Result<std::vector<BlobSlot>> AllocateBlobs(
      ClientId client, const std::vector<std::pair<ObjectID, uint64_t>>& blobs);
  // CreateReplica's check of one node with `budget` MessagePack levels left.
  Status CheckReplica(ClientId client, const json& node, size_t budget) const;
  ObjectID BuildReplica(ClientId client, const json& node);
  // A visible, sealed object, or ObjectNotFound/NotSealed.
  Result<ObjectEntry*> FindSealed(ObjectID id);
  // The sum of the relocations of the blobs of `cache`, or IOError naming
  // one that is not in memory (`id`: the object they belong to).
  Result<uint64_t> Relocations(ObjectID id, const TreeCache& cache) const;
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
  // Ends a copy with the blob IN MEMORY: back in the eviction order, or
  // freed if it was deleted meanwhile (then `e` is gone).
  void BackInMemory(ObjectEntry& e);
  // Marks the chosen blobs SPILLING (out of the eviction order) and appends
  // their copies to *jobs.
  void MarkSpilling(const std::vector<ObjectEntry*>& chosen,
                    std::vector<SpillJob>* jobs);

  Allocator* allocator_;
  uint16_t instance_id_;
  uint64_t next_sequence_ = 1;
  // Entries are never moved while they exist (the eviction order points at
  // them): std::unordered_map keeps its elements in place.
  std::unordered_map<ObjectID, ObjectEntry> entries_;
  std::unordered_map<ClientId, ClientState> clients_;
  std::unordered_map<ObjectID, ClientId> reserved_by_;  // unused reserved ids
  TreeCodec codec_;
  EvictionPolicy eviction_;
  std::function<void(ObjectID)> drop_spill_file_;
};

}  // namespace trellis::server
