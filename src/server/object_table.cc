#include "server/object_table.h"

#include <fnmatch.h>

#include <algorithm>
#include <cassert>
#include <chrono>

#include "common/tree_format.h"
#include "trellis/object.h"

namespace trellis::server {

namespace {
// Milliseconds of the system clock since the epoch (an object's age is for
// people reading `trellis ls`: wall-clock time, not the Store's clock).
int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
}  // namespace

ObjectTable::ObjectTable(Allocator* allocator, uint16_t instance_id)
    : allocator_(allocator),
      instance_id_(instance_id),
      codec_(this, instance_id) {}

void ObjectTable::AddClient(ClientId client) { clients_[client]; }

void ObjectTable::RemoveClient(ClientId client) {
  auto it = clients_.find(client);
  if (it == clients_.end()) return;
  ClientState state = std::move(it->second);
  clients_.erase(it);
  if (state.reserved.valid()) reserved_by_.erase(state.reserved);
  for (ObjectID id : state.created) {
    auto e = entries_.find(id);
    assert(e != entries_.end() && e->second.state == ObjectState::kCreated);
    FreeBlobMemory(e->second);
    entries_.erase(e);
  }
  for (auto [id, count] : state.holds) {
    auto e = entries_.find(id);
    assert(e != entries_.end() && e->second.readers >= count);
    e->second.readers -= count;
    FreeIfUnused(id);
  }
}

ObjectEntry* ObjectTable::FindVisible(ObjectID id) {
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second.state == ObjectState::kDeleted) {
    return nullptr;
  }
  return &it->second;
}

const ObjectEntry* ObjectTable::Find(ObjectID id) const {
  return const_cast<ObjectTable*>(this)->FindVisible(id);
}

Result<std::vector<BlobSlot>> ObjectTable::CreateBlobs(
    ClientId client, const std::vector<uint64_t>& sizes) {
  std::vector<std::pair<ObjectID, uint64_t>> blobs;
  blobs.reserve(sizes.size());
  for (uint64_t size : sizes) blobs.emplace_back(NextId(), size);
  return AllocateBlobs(client, blobs);
}

Result<std::vector<BlobSlot>> ObjectTable::CreateReplicaBlobs(
    ClientId client, const std::vector<std::pair<ObjectID, uint64_t>>& blobs) {
  std::unordered_set<ObjectID> seen;
  for (const auto& [id, size] : blobs) {
    if (id.value() == 0 || id.instance_id() == instance_id_) {
      return Status::Invalid("blob " + id.ToString() +
                             " cannot be a replica here: replicas keep the "
                             "id another instance gave them");
    }
    if (entries_.count(id) || !seen.insert(id).second) {
      return Status::ObjectExists("blob " + id.ToString() +
                                  " is already here (or being released)");
    }
  }
  return AllocateBlobs(client, blobs);
}

Result<std::vector<BlobSlot>> ObjectTable::AllocateBlobs(
    ClientId client, const std::vector<std::pair<ObjectID, uint64_t>>& blobs) {
  ClientState& state = clients_.at(client);
  std::vector<BlobSlot> slots;
  slots.reserve(blobs.size());
  for (const auto& [id, size] : blobs) {
    uint64_t offset = 0;
    if (size > 0) {
      auto allocated = allocator_->Allocate(size);
      if (!allocated.ok()) {
        for (const BlobSlot& s : slots) {
          if (s.size > 0) allocator_->Free(s.offset, s.size);
        }
        return allocated.status();
      }
      offset = *allocated;
    }
    slots.push_back({id, offset, size});
  }
  for (const BlobSlot& s : slots) {
    ObjectEntry& e = entries_[s.id];
    e.id = s.id;
    e.is_blob = true;
    e.type_name = kBlobTypeName;
    e.offset = s.offset;
    e.size = s.size;
    e.nbytes = s.size;
    e.nesting = 1;
    e.creator = client;
    e.created_ms = NowMs();
    state.created.insert(s.id);
  }
  return slots;
}

Status ObjectTable::Seal(ClientId client, const std::vector<ObjectID>& ids) {
  ClientState& state = clients_.at(client);
  for (ObjectID id : ids) {
    if (!state.created.count(id)) {
      const ObjectEntry* e = Find(id);
      if (e && e->state == ObjectState::kSealed) {
        return Status::ObjectExists("blob " + id.ToString() +
                                    " is already sealed");
      }
      return Status::ObjectNotFound("no unsealed blob " + id.ToString() +
                                    " created by this client");
    }
  }
  for (ObjectID id : ids) {
    // An id listed twice is sealed once.
    if (state.created.count(id)) SealBlob(state, entries_.at(id));
  }
  return Status::OK();
}

void ObjectTable::SealBlob(ClientState& state, ObjectEntry& blob) {
  state.created.erase(blob.id);
  blob.state = ObjectState::kSealed;
  eviction_.Add(blob);
}

Status ObjectTable::Abort(ClientId client, const std::vector<ObjectID>& ids) {
  ClientState& state = clients_.at(client);
  for (ObjectID id : ids) {
    if (!state.created.count(id)) {
      return Status::ObjectNotFound("no unsealed blob " + id.ToString() +
                                    " created by this client");
    }
  }
  for (ObjectID id : ids) {
    if (!state.created.erase(id)) continue;  // listed twice
    auto e = entries_.find(id);
    FreeBlobMemory(e->second);
    entries_.erase(e);
  }
  return Status::OK();
}

Status ObjectTable::Trim(ClientId client, ObjectID id, uint64_t size) {
  if (!clients_.at(client).created.count(id)) {
    return Status::ObjectNotFound("no unsealed blob " + id.ToString() +
                                  " created by this client to trim");
  }
  ObjectEntry& e = entries_.at(id);
  if (size == 0 || size > e.size) {
    return Status::Invalid("cannot trim blob " + id.ToString() + " of " +
                           std::to_string(e.size) + " bytes to " +
                           std::to_string(size));
  }
  allocator_->Shrink(e.offset, e.size, size);
  e.size = e.nbytes = size;
  return Status::OK();
}

ObjectID ObjectTable::BuildTree(ClientId client, json& node, ObjectID as) {
  ObjectID ref;
  if (IsReference(node, &ref)) {
    ObjectEntry& e = entries_.at(ref);
    if (e.state == ObjectState::kCreated) SealBlob(clients_.at(client), e);
    return ref;
  }
  ObjectEntry entry;
  entry.id = as.valid() ? as : NextId();
  entry.state = ObjectState::kSealed;
  entry.created_ms = NowMs();
  entry.type_name = std::move(node["typename"].get_ref<std::string&>());
  auto fields = node.find("fields");
  entry.fields = fields != node.end() ? std::move(*fields) : json::object();
  entry.creator = client;
  auto members = node.find("members");
  if (members != node.end()) {
    for (auto& [name, member] : members->items()) {
      ObjectID child = BuildTree(client, member);
      entries_.at(child).referrers++;
      entry.members.emplace_back(name, child);
    }
  }
  entry.nbytes = codec_.DistinctBlobBytes(entry.members);
  entry.nesting = codec_.Nesting(entry.fields, entry.members);
  ObjectID id = entry.id;
  entries_.emplace(id, std::move(entry));
  return id;
}

ObjectID ObjectTable::ReserveId(ClientId client) {
  ClientState& state = clients_.at(client);
  if (!state.reserved.valid()) {
    state.reserved = NextId();
    reserved_by_.emplace(state.reserved, client);
  }
  return state.reserved;
}

Result<ObjectID> ObjectTable::CreateObject(ClientId client, json tree,
                                           ObjectID as) {
  if (as.valid()) {
    auto state = clients_.find(client);
    if (state == clients_.end() || state->second.reserved != as) {
      return Status::Invalid("object id " + as.ToString() +
                             " is not the one reserved for this connection");
    }
    ObjectID ref;
    if (IsReference(tree, &ref)) {
      return Status::Invalid("a reserved id (" + as.ToString() +
                             ") is for a composite root, not a reference");
    }
  }
  TRELLIS_RETURN_NOT_OK(codec_.Validate(client, tree));
  if (as.valid()) {
    clients_.at(client).reserved = ObjectID();
    reserved_by_.erase(as);
  }
  ObjectID id = BuildTree(client, tree, as);
  // Encode the tree for GetMeta now, while it is hot in cache: the first get
  // of a new object (the usual case in a pipeline) then costs a copy. With a
  // blob not in memory, the get that reloads it encodes the tree.
  const ObjectEntry& entry = entries_.at(id);
  Result<uint64_t> relocations = Relocations(id, codec_.CacheOf(entry));
  if (relocations.ok()) codec_.Encoded(entry, *relocations);
  return id;
}

Status ObjectTable::CheckReplica(ClientId client, const json& node,
                                 size_t budget) const {
  format::NodeShape<const json*> shape;
  TRELLIS_RETURN_NOT_OK(format::CheckNodeShape<format::JsonNodes>(
      &node, format::TreeKind::kGotten, &shape));
  ObjectID id(shape.id);
  if (!id.valid()) return Status::Invalid("a replicated node needs its 'id'");
  auto here = entries_.find(id);
  if (here != entries_.end()) {  // a reference to what is here already
    const ObjectEntry& e = here->second;
    if (e.state == ObjectState::kDeleted) {
      return Status::ObjectExists(id.ToString() +
                                  " was deleted here and is being released");
    }
    if (e.state == ObjectState::kCreated && e.creator != client) {
      return Status::NotSealed("blob " + id.ToString() +
                               " is being written by another client");
    }
    return e.nesting > budget
               ? Status::Invalid("replicated tree nests too deep")
               : Status::OK();
  }
  bool named = shape.type_name && shape.type_name->is_string();
  if (named && *shape.type_name == kBlobTypeName) {
    return Status::ObjectNotFound("blob " + id.ToString() +
                                  " of the replica has not been copied here");
  }
  if (!named || id.instance_id() == instance_id_) {
    return Status::Invalid("node " + id.ToString() +
                           " is neither here nor a new replica");
  }
  if (budget < 2 ||
      (shape.fields && protocol::NestingDepth(*shape.fields) > budget - 1)) {
    return Status::Invalid("replicated tree nests too deep");
  }
  if (shape.members) {
    for (const auto& [name, member] : shape.members->items()) {
      Status st = CheckReplica(client, member, budget - 2);
      if (!st.ok()) {
        return Status(st.code(), "member '" + name + "': " + st.message());
      }
    }
  }
  return Status::OK();
}

ObjectID ObjectTable::BuildReplica(ClientId client, const json& node) {
  ObjectID id(node.at(std::string(format::kIdKey)).get<uint64_t>());
  auto here = entries_.find(id);
  if (here != entries_.end()) {
    ObjectEntry& e = here->second;
    if (e.state == ObjectState::kCreated) SealBlob(clients_.at(client), e);
    return id;
  }
  ObjectEntry entry;
  entry.id = id;
  entry.state = ObjectState::kSealed;
  entry.created_ms = NowMs();
  entry.type_name =
      node.at(std::string(format::kTypeNameKey)).get<std::string>();
  auto fields = node.find(std::string(format::kFieldsKey));
  entry.fields = fields != node.end() ? *fields : json::object();
  entry.creator = client;
  auto members = node.find(std::string(format::kMembersKey));
  if (members != node.end()) {
    for (const auto& [name, member] : members->items()) {
      ObjectID child = BuildReplica(client, member);
      entries_.at(child).referrers++;
      entry.members.emplace_back(name, child);
    }
  }
  entry.nbytes = codec_.DistinctBlobBytes(entry.members);
  entry.nesting = codec_.Nesting(entry.fields, entry.members);
  entries_.emplace(id, std::move(entry));
  return id;
}

Result<ObjectID> ObjectTable::CreateReplica(ClientId client, const json& tree) {
  TRELLIS_RETURN_NOT_OK(CheckReplica(client, tree, kMaxTreeNesting));
  ObjectID id = BuildReplica(client, tree);
  const ObjectEntry& entry = entries_.at(id);
  Result<uint64_t> relocations = Relocations(id, codec_.CacheOf(entry));
  if (relocations.ok()) codec_.Encoded(entry, *relocations);
  return id;
}

void ObjectTable::Hold(ClientState& state, ObjectEntry& entry) {
  state.holds[entry.id]++;
  entry.readers++;
}

Result<ObjectEntry*> ObjectTable::FindSealed(ObjectID id) {
  ObjectEntry* e = FindVisible(id);
  if (!e) {
    return Status::ObjectNotFound("object " + id.ToString() + " not found");
  }
  if (e->state != ObjectState::kSealed) {
    return Status::NotSealed("object " + id.ToString() + " is not sealed");
  }
  return e;
}

Result<uint64_t> ObjectTable::Relocations(ObjectID id,
                                          const TreeCache& cache) const {
  uint64_t relocations = 0;
  for (ObjectID blob : cache.blobs) {
    const ObjectEntry& b = entries_.at(blob);
    if (!b.resident()) {
      return Status::IOError("blob " + blob.ToString() + " of " +
                             id.ToString() + " is not in memory");
    }
    relocations += b.relocations;
  }
  return relocations;
}

Result<uint64_t> ObjectTable::HoldBlobs(ClientId client, ObjectID id,
                                        const TreeCache& cache,
                                        std::vector<ObjectID>* held) {
  // All or nothing: check first.
  TRELLIS_ASSIGN_OR_RAISE(uint64_t relocations, Relocations(id, cache));
  ClientState& state = clients_.at(client);
  for (ObjectID blob : cache.blobs) {
    ObjectEntry& b = entries_.at(blob);
    Hold(state, b);
    eviction_.Touch(b);
    held->push_back(blob);
  }
  return relocations;
}

Result<json> ObjectTable::GetTree(ClientId client, ObjectID id,
                                  std::vector<ObjectID>* held) {
  TRELLIS_ASSIGN_OR_RAISE(ObjectEntry * e, FindSealed(id));
  if (held) {
    TRELLIS_RETURN_NOT_OK(
        HoldBlobs(client, id, codec_.CacheOf(*e), held).status());
  }
  return codec_.Expand(*e);
}

Status ObjectTable::GetTreeEncoded(ClientId client, ObjectID id,
                                   std::vector<uint8_t>* out,
                                   std::vector<ObjectID>* held) {
  TRELLIS_ASSIGN_OR_RAISE(ObjectEntry * e, FindSealed(id));
  TRELLIS_ASSIGN_OR_RAISE(uint64_t relocations,
                          HoldBlobs(client, id, codec_.CacheOf(*e), held));
  const std::vector<uint8_t>& encoded = codec_.Encoded(*e, relocations);
  out->insert(out->end(), encoded.begin(), encoded.end());
  return Status::OK();
}

Status ObjectTable::GetTreeRelocated(ClientId client, ObjectID id,
                                     std::vector<uint8_t>* out,
                                     std::vector<ObjectID>* held,
                                     uint64_t* end) {
  TRELLIS_ASSIGN_OR_RAISE(ObjectEntry * e, FindSealed(id));
  const TreeCache& cache = codec_.CacheOf(*e);
  TRELLIS_RETURN_NOT_OK(HoldBlobs(client, id, cache, held).status());
  std::vector<uint64_t> sizes;
  sizes.reserve(cache.blobs.size());
  for (ObjectID blob : cache.blobs) sizes.push_back(entries_.at(blob).size);
  uint64_t tree_bytes = 0;
  std::vector<uint64_t> at =
      protocol::ConcatenatedPositions(sizes, &tree_bytes);
  BlobPositions positions;
  for (size_t i = 0; i < at.size(); ++i) {
    positions[cache.blobs[i]] = *end + at[i];
  }
  *end += tree_bytes;
  codec_.Encode(*e, out, &positions);
  return Status::OK();
}

Result<BlobSlot> ObjectTable::GetBlob(ClientId client, ObjectID id) {
  ObjectEntry* e = FindVisible(id);
  if (!e) return Status::ObjectNotFound("blob " + id.ToString() + " not found");
  if (!e->is_blob) {
    return Status::Invalid(id.ToString() + " is a " + e->type_name +
                           ", not a blob");
  }
  if (e->state != ObjectState::kSealed) {
    return Status::NotSealed("blob " + id.ToString() + " is not sealed");
  }
  if (!e->resident()) {
    return Status::IOError("blob " + id.ToString() + " is not in memory");
  }
  Hold(clients_.at(client), *e);
  eviction_.Touch(*e);
  return BlobSlot{e->id, e->offset, e->size};
}

Status ObjectTable::Release(ClientId client, const std::vector<ObjectID>& ids) {
  ClientState& state = clients_.at(client);
  for (ObjectID id : ids) {
    auto h = state.holds.find(id);
    if (h == state.holds.end()) {
      return Status::Invalid("release of " + id.ToString() +
                             ", which this client does not hold");
    }
    if (--h->second == 0) state.holds.erase(h);
    ObjectEntry& e = entries_.at(id);
    assert(e.readers > 0);
    e.readers--;
    FreeIfUnused(id);
  }
  return Status::OK();
}

Result<std::vector<ObjectID>> ObjectTable::Delete(
    const std::vector<ObjectID>& ids, bool deep, bool force) {
  for (ObjectID id : ids) {
    const ObjectEntry* e = Find(id);
    if (!e) {
      return Status::ObjectNotFound("object " + id.ToString() + " not found");
    }
    if (e->state == ObjectState::kCreated) {
      return Status::NotSealed("blob " + id.ToString() +
                               " is not sealed; its creator aborts it");
    }
    if (!force && e->referrers > 0) {
      return Status::Invalid(
          "object " + id.ToString() + " is a member of " +
          std::to_string(e->referrers) +
          " other object(s); delete those first or pass force=true");
    }
  }
  std::vector<ObjectID> deleted;
  for (ObjectID id : ids) {
    ObjectEntry* e = FindVisible(id);
    if (e) MarkDeleted(*e, deep, force, &deleted);  // null: listed twice
  }
  return deleted;
}

void ObjectTable::MarkDeleted(ObjectEntry& entry, bool deep, bool force,
                              std::vector<ObjectID>* deleted) {
  entry.state = ObjectState::kDeleted;
  entry.tree_cache.reset();  // only visible objects use it
  eviction_.Remove(entry);
  deleted->push_back(entry.id);
  // A force-deleted object that live objects still contain keeps its members
  // until the last of those is gone, so their readers see a whole tree.
  if (entry.referrers == 0) DetachMembers(entry, deep, force, deleted);
  FreeIfUnused(entry.id);
}

void ObjectTable::DetachMembers(ObjectEntry& entry, bool deep, bool force,
                                std::vector<ObjectID>* deleted) {
  std::vector<std::pair<std::string, ObjectID>> members =
      std::move(entry.members);
  entry.members.clear();
  for (const auto& [name, child] : members) {
    ObjectEntry& c = entries_.at(child);
    assert(c.referrers > 0);
    c.referrers--;
    if (deep && c.state == ObjectState::kSealed &&
        (force || c.referrers == 0)) {
      MarkDeleted(c, deep, force, deleted);
      continue;
    }
    if (c.state == ObjectState::kDeleted && c.referrers == 0) {
      DetachMembers(c, /*deep=*/false, /*force=*/false, deleted);
    }
    FreeIfUnused(child);
  }
}

void ObjectTable::FreeIfUnused(ObjectID id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  ObjectEntry& e = it->second;
  if (e.state != ObjectState::kDeleted || e.readers > 0 || e.referrers > 0) {
    return;
  }
  // A worker is copying these bytes; FinishSpill/FinishReload frees them.
  if (e.residence == Residence::kSpilling ||
      e.residence == Residence::kReloading) {
    return;
  }
  FreeBlobMemory(e);
  entries_.erase(it);
}

void ObjectTable::FreeBlobMemory(ObjectEntry& entry) {
  if (!entry.is_blob) return;
  eviction_.Remove(entry);
  if (entry.residence == Residence::kSpilled) {
    if (drop_spill_file_) drop_spill_file_(entry.id);
  } else if (entry.size > 0) {
    allocator_->Free(entry.offset, entry.size);
  }
  entry.size = 0;
}

Status ObjectTable::Persist(ObjectID id) {
  ObjectEntry* e = FindVisible(id);
  if (!e)
    return Status::ObjectNotFound("object " + id.ToString() + " not found");
  if (e->state != ObjectState::kSealed) {
    return Status::NotSealed("object " + id.ToString() + " is not sealed");
  }
  e->persisted = true;
  return Status::OK();
}

std::vector<json> ObjectTable::List(const std::string& pattern,
                                    size_t limit) const {
  std::vector<json> out;
  for (const auto& [id, e] : entries_) {
    if (out.size() >= limit) break;
    if (e.state != ObjectState::kSealed) continue;
    if (fnmatch(pattern.c_str(), e.type_name.c_str(), 0) != 0) continue;
    // Over the object's blobs (a blob: itself): the most holds any has, and
    // the bytes pinned and spilled.
    uint32_t readers = 0;
    uint64_t pinned_bytes = 0, spilled_bytes = 0;
    auto count = [&](const ObjectEntry& blob) {
      readers = std::max(readers, blob.readers);
      if (blob.pinned) pinned_bytes += blob.size;
      if (blob.residence == Residence::kSpilled) spilled_bytes += blob.size;
    };
    if (e.is_blob) {
      count(e);
    } else {
      for (ObjectID blob : codec_.CacheOf(e).blobs) count(entries_.at(blob));
    }
    json item = {{"id", id.value()},
                 {"typename", e.type_name},
                 {"nbytes", e.nbytes},
                 {"instance_id", instance_id_},
                 {"persisted", e.persisted},
                 {"created_ms", e.created_ms},
                 {"referrers", e.referrers},
                 {"readers", readers},
                 {"pinned_bytes", pinned_bytes},
                 {"spilled_bytes", spilled_bytes}};
    if (!e.is_blob) item["fields"] = e.fields;
    out.push_back(std::move(item));
  }
  return out;
}

TableStats ObjectTable::Stats() const {
  TableStats s;
  for (const auto& [id, e] : entries_) {
    if (e.is_blob) {
      if (e.residence == Residence::kSpilled) {
        s.spilled_blobs++;
        s.spilled_bytes += e.size;
      } else if (e.readers > 0) {
        s.held_bytes += e.size;
      } else if (e.pinned) {
        s.pinned_bytes += e.size;
      }
    }
    switch (e.state) {
      case ObjectState::kCreated:
        s.unsealed_blobs++;
        break;
      case ObjectState::kSealed:
        (e.is_blob ? s.blobs : s.objects)++;
        break;
      case ObjectState::kDeleted:
        s.deleted_pending++;
        break;
    }
  }
  return s;
}

// ------------------------------------------------------------ memory pressure

void ObjectTable::MarkSpilling(const std::vector<ObjectEntry*>& chosen,
                               std::vector<SpillJob>* jobs) {
  for (ObjectEntry* e : chosen) {
    eviction_.Remove(*e);
    e->residence = Residence::kSpilling;
    jobs->push_back({e->id, e->offset, e->size});
  }
}

std::vector<SpillJob> ObjectTable::StartSpills(uint64_t bytes) {
  std::vector<SpillJob> jobs;
  MarkSpilling(eviction_.ChooseOldest(bytes), &jobs);
  return jobs;
}

std::vector<SpillJob> ObjectTable::StartSpillsFor(uint64_t contiguous,
                                                  uint64_t bytes) {
  std::vector<SpillJob> jobs;
  MarkSpilling(eviction_.ChooseRange(contiguous, *allocator_), &jobs);
  uint64_t chosen = 0;
  for (const SpillJob& job : jobs) chosen += job.size;
  if (chosen < bytes) {
    MarkSpilling(eviction_.ChooseOldest(bytes - chosen), &jobs);
  }
  return jobs;
}

Result<std::vector<SpillJob>> ObjectTable::StartEvictions(
    const std::vector<ObjectID>& ids) {
  TRELLIS_ASSIGN_OR_RAISE(std::vector<ObjectID> blobs, BlobsOf(ids));
  std::vector<ObjectEntry*> entries;
  entries.reserve(blobs.size());
  for (ObjectID id : blobs) entries.push_back(&entries_.at(id));
  TRELLIS_ASSIGN_OR_RAISE(std::vector<ObjectEntry*> chosen,
                          EvictionPolicy::ChooseNamed(entries));
  std::vector<SpillJob> jobs;
  MarkSpilling(chosen, &jobs);
  return jobs;
}

bool ObjectTable::FinishSpill(ObjectID id, bool written) {
  ObjectEntry& e = entries_.at(id);
  assert(e.residence == Residence::kSpilling);
  bool keep_in_memory = !written || e.state == ObjectState::kDeleted ||
                        e.readers > 0 || e.pinned || e.transient_pins > 0;
  if (keep_in_memory) {
    BackInMemory(e);
    return false;
  }
  allocator_->Free(e.offset, e.size);
  e.residence = Residence::kSpilled;
  return true;
}

Result<SpillJob> ObjectTable::StartReload(ObjectID id) {
  ObjectEntry& e = entries_.at(id);
  assert(e.residence == Residence::kSpilled);
  TRELLIS_ASSIGN_OR_RAISE(uint64_t offset, allocator_->Allocate(e.size));
  e.offset = offset;
  e.relocations++;  // trees cached with the old offset are stale
  e.residence = Residence::kReloading;
  return SpillJob{e.id, e.offset, e.size};
}

void ObjectTable::FinishReload(ObjectID id, bool read) {
  ObjectEntry& e = entries_.at(id);
  assert(e.residence == Residence::kReloading);
  if (!read) {
    allocator_->Free(e.offset, e.size);
    e.residence = Residence::kSpilled;
    FreeIfUnused(id);
    return;
  }
  BackInMemory(e);
}

void ObjectTable::BackInMemory(ObjectEntry& e) {
  e.residence = Residence::kInMemory;
  if (e.state == ObjectState::kSealed) {
    eviction_.Add(e);
  } else {
    FreeIfUnused(e.id);  // deleted while its bytes were copied
  }
}

Result<std::vector<ObjectID>> ObjectTable::BlobsOf(
    const std::vector<ObjectID>& ids) const {
  std::vector<const ObjectEntry*> entries;
  entries.reserve(ids.size());
  for (ObjectID id : ids) {
    const ObjectEntry* e = Find(id);
    if (!e) {
      return Status::ObjectNotFound("object " + id.ToString() + " not found");
    }
    entries.push_back(e);
  }
  if (entries.size() == 1) return codec_.CacheOf(*entries[0]).blobs;
  std::vector<ObjectID> blobs;
  std::unordered_set<ObjectID> seen;
  for (const ObjectEntry* e : entries) {
    for (ObjectID blob : codec_.CacheOf(*e).blobs) {
      if (seen.insert(blob).second) blobs.push_back(blob);
    }
  }
  return blobs;
}

const ObjectEntry* ObjectTable::FindAny(ObjectID id) const {
  auto it = entries_.find(id);
  return it == entries_.end() ? nullptr : &it->second;
}

void ObjectTable::AddTransientPin(ObjectID blob) {
  auto it = entries_.find(blob);
  if (it != entries_.end()) it->second.transient_pins++;
}

void ObjectTable::RemoveTransientPin(ObjectID blob) {
  auto it = entries_.find(blob);
  if (it == entries_.end()) return;
  assert(it->second.transient_pins > 0);
  it->second.transient_pins--;
}

Status ObjectTable::SetPinned(const std::vector<ObjectID>& ids, bool pinned) {
  TRELLIS_ASSIGN_OR_RAISE(std::vector<ObjectID> blobs, BlobsOf(ids));
  for (ObjectID id : blobs) entries_.at(id).pinned = pinned;
  return Status::OK();
}

}  // namespace trellis::server
