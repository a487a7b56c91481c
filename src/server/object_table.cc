#include "server/object_table.h"

#include <fnmatch.h>

#include <algorithm>
#include <cassert>

#include "common/protocol.h"
#include "trellis/object.h"

namespace trellis::server {
namespace {

constexpr int kMaxTreeDepth = 64;

// A node naming an existing object: {"id": <non-zero>}.
bool IsReference(const json& node, ObjectID* id = nullptr) {
  auto it = node.find("id");
  uint64_t value = 0;
  if (it == node.end() || !protocol::AsUint(*it, &value) || value == 0) {
    return false;
  }
  if (id) *id = ObjectID(value);
  return true;
}

}  // namespace

ObjectTable::ObjectTable(Allocator* allocator, uint16_t instance_id)
    : allocator_(allocator), instance_id_(instance_id) {}

void ObjectTable::AddClient(ClientId client) { clients_[client]; }

void ObjectTable::RemoveClient(ClientId client) {
  auto it = clients_.find(client);
  if (it == clients_.end()) return;
  ClientState state = std::move(it->second);
  clients_.erase(it);
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
  ClientState& state = clients_.at(client);
  std::vector<BlobSlot> slots;
  slots.reserve(sizes.size());
  for (uint64_t size : sizes) {
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
    slots.push_back({NextId(), offset, size});
  }
  for (const BlobSlot& s : slots) {
    ObjectEntry& e = entries_[s.id];
    e.id = s.id;
    e.is_blob = true;
    e.type_name = kBlobTypeName;
    e.offset = s.offset;
    e.size = s.size;
    e.nbytes = s.size;
    e.creator = client;
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
    if (!state.created.erase(id)) continue;  // listed twice
    ObjectEntry& e = entries_.at(id);
    e.state = ObjectState::kSealed;
    LruInsert(e);
  }
  return Status::OK();
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

Status ObjectTable::ValidateTree(ClientId client, const json& node,
                                 int depth) const {
  if (depth > kMaxTreeDepth) {
    return Status::Invalid("object tree nests deeper than " +
                           std::to_string(kMaxTreeDepth) + " levels");
  }
  if (!node.is_object()) return Status::Invalid("tree node must be a map");
  ObjectID id;
  if (IsReference(node, &id)) {
    auto it = entries_.find(id);
    if (it == entries_.end() || it->second.state == ObjectState::kDeleted) {
      return Status::ObjectNotFound("member " + id.ToString() +
                                    " does not exist");
    }
    const ObjectEntry& e = it->second;
    if (e.state == ObjectState::kCreated && e.creator != client) {
      return Status::NotSealed("member " + id.ToString() +
                               " is being written by another client");
    }
    return Status::OK();
  }
  auto type_name = node.find("typename");
  if (type_name == node.end() || !type_name->is_string() ||
      type_name->get_ref<const std::string&>().empty()) {
    return Status::Invalid(
        "a new tree node needs a non-empty string 'typename' (or an 'id' "
        "naming an existing object)");
  }
  if (*type_name == kBlobTypeName) {
    return Status::Invalid("blobs are made with CreateBlobs, not in a tree");
  }
  auto fields = node.find("fields");
  if (fields != node.end() && !fields->is_object()) {
    return Status::Invalid("'fields' of a " + type_name->get<std::string>() +
                           " node must be a map");
  }
  auto members = node.find("members");
  if (members != node.end()) {
    if (!members->is_object()) {
      return Status::Invalid("'members' of a " + type_name->get<std::string>() +
                             " node must be a map");
    }
    for (const auto& [name, member] : members->items()) {
      Status st = ValidateTree(client, member, depth + 1);
      if (!st.ok()) {
        return Status(st.code(), "member '" + name + "': " + st.message());
      }
    }
  }
  return Status::OK();
}

ObjectID ObjectTable::BuildTree(ClientId client, const json& node) {
  ObjectID ref;
  if (IsReference(node, &ref)) {
    ObjectEntry& e = entries_.at(ref);
    if (e.state == ObjectState::kCreated) {
      clients_.at(client).created.erase(ref);
      e.state = ObjectState::kSealed;
      LruInsert(e);
    }
    return ref;
  }
  ObjectEntry entry;
  entry.id = NextId();
  entry.state = ObjectState::kSealed;
  entry.type_name = node["typename"].get<std::string>();
  auto fields = node.find("fields");
  entry.fields = fields != node.end() ? *fields : json::object();
  entry.creator = client;
  auto members = node.find("members");
  if (members != node.end()) {
    for (const auto& [name, member] : members->items()) {
      ObjectID child = BuildTree(client, member);
      entries_.at(child).referrers++;
      entry.members.emplace_back(name, child);
    }
  }
  entry.nbytes = DistinctBlobBytes(entry.members);
  ObjectID id = entry.id;
  entries_.emplace(id, std::move(entry));
  return id;
}

uint64_t ObjectTable::DistinctBlobBytes(
    const std::vector<std::pair<std::string, ObjectID>>& members) const {
  // Members may share blobs (a DataFrame's columns share one): count each
  // blob once.
  std::unordered_set<ObjectID> seen;
  std::vector<ObjectID> stack;
  for (const auto& m : members) stack.push_back(m.second);
  uint64_t bytes = 0;
  while (!stack.empty()) {
    ObjectID id = stack.back();
    stack.pop_back();
    if (!seen.insert(id).second) continue;
    const ObjectEntry& e = entries_.at(id);
    if (e.is_blob) bytes += e.size;
    for (const auto& m : e.members) stack.push_back(m.second);
  }
  return bytes;
}

Result<ObjectID> ObjectTable::CreateObject(ClientId client, const json& tree) {
  if (IsReference(tree)) {
    return Status::Invalid("the root of a new object must be a new node");
  }
  TRELLIS_RETURN_NOT_OK(ValidateTree(client, tree, 0));
  ObjectID id = BuildTree(client, tree);
  // Encode the tree for GetMeta now, while it is hot in cache: the first get
  // of a new object (the usual case in a pipeline) then costs a copy.
  const ObjectEntry& entry = entries_.at(id);
  TreeCache& cache = CacheOf(entry);
  uint64_t relocations = 0;
  for (ObjectID blob : cache.blobs) {
    const ObjectEntry& b = entries_.at(blob);
    if (!b.resident()) return id;  // encoded by the get that reloads it
    relocations += b.relocations;
  }
  EncodeTree(entry, &cache.encoded);
  cache.relocations = relocations;
  return id;
}

void ObjectTable::Hold(ClientState& state, ObjectEntry& entry) {
  state.holds[entry.id]++;
  entry.readers++;
}

json ObjectTable::ExpandTree(const ObjectEntry& entry) const {
  json node = json::object();
  node["typename"] = entry.type_name;
  node["id"] = entry.id.value();
  node["nbytes"] = entry.nbytes;
  node["instance_id"] = instance_id_;
  if (entry.is_blob) {
    if (entry.resident()) node["offset"] = entry.offset;
  } else {
    node["fields"] = entry.fields;
    json& members = node["members"] = json::object();
    for (const auto& [name, child] : entry.members) {
      members[name] = ExpandTree(entries_.at(child));
    }
  }
  return node;
}

void ObjectTable::EncodeTree(const ObjectEntry& entry,
                             std::vector<uint8_t>* out) const {
  bool offset = entry.is_blob && entry.resident();
  protocol::AppendMsgpackMapHeader(entry.is_blob ? 4 + offset : 6, out);
  protocol::AppendMsgpackString("typename", out);
  protocol::AppendMsgpackString(entry.type_name, out);
  protocol::AppendMsgpackString("id", out);
  protocol::AppendMsgpackUint(entry.id.value(), out);
  protocol::AppendMsgpackString("nbytes", out);
  protocol::AppendMsgpackUint(entry.nbytes, out);
  protocol::AppendMsgpackString("instance_id", out);
  protocol::AppendMsgpackUint(instance_id_, out);
  if (entry.is_blob) {
    if (offset) {
      protocol::AppendMsgpackString("offset", out);
      protocol::AppendMsgpackUint(entry.offset, out);
    }
    return;
  }
  protocol::AppendMsgpackString("fields", out);
  json::to_msgpack(entry.fields, *out);
  protocol::AppendMsgpackString("members", out);
  protocol::AppendMsgpackMapHeader(entry.members.size(), out);
  for (const auto& [name, child] : entry.members) {
    protocol::AppendMsgpackString(name, out);
    EncodeTree(entries_.at(child), out);
  }
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

TreeCache& ObjectTable::CacheOf(const ObjectEntry& entry) const {
  if (!entry.tree_cache) {
    auto cache = std::make_unique<TreeCache>();
    std::unordered_set<ObjectID> seen;
    std::vector<const ObjectEntry*> stack = {&entry};
    while (!stack.empty()) {
      const ObjectEntry* e = stack.back();
      stack.pop_back();
      if (!seen.insert(e->id).second) continue;
      if (e->is_blob) cache->blobs.push_back(e->id);
      for (auto m = e->members.rbegin(); m != e->members.rend(); ++m) {
        stack.push_back(&entries_.at(m->second));
      }
    }
    entry.tree_cache = std::move(cache);
  }
  return *entry.tree_cache;
}

Result<uint64_t> ObjectTable::HoldBlobs(ClientId client, ObjectID id,
                                        const TreeCache& cache,
                                        std::vector<ObjectID>* held) {
  uint64_t relocations = 0;
  for (ObjectID blob : cache.blobs) {  // all or nothing: check first
    const ObjectEntry& b = entries_.at(blob);
    if (!b.resident()) {
      return Status::IOError("blob " + blob.ToString() + " of " +
                             id.ToString() + " is not in memory");
    }
    relocations += b.relocations;
  }
  ClientState& state = clients_.at(client);
  for (ObjectID blob : cache.blobs) {
    ObjectEntry& b = entries_.at(blob);
    Hold(state, b);
    LruTouch(b);
    held->push_back(blob);
  }
  return relocations;
}

Result<json> ObjectTable::GetTree(ClientId client, ObjectID id,
                                  std::vector<ObjectID>* held) {
  TRELLIS_ASSIGN_OR_RAISE(ObjectEntry * e, FindSealed(id));
  if (held)
    TRELLIS_RETURN_NOT_OK(HoldBlobs(client, id, CacheOf(*e), held).status());
  return ExpandTree(*e);
}

Status ObjectTable::GetTreeEncoded(ClientId client, ObjectID id,
                                   std::vector<uint8_t>* out,
                                   std::vector<ObjectID>* held) {
  TRELLIS_ASSIGN_OR_RAISE(ObjectEntry * e, FindSealed(id));
  TreeCache& cache = CacheOf(*e);
  TRELLIS_ASSIGN_OR_RAISE(uint64_t relocations,
                          HoldBlobs(client, id, cache, held));
  if (cache.encoded.empty() || cache.relocations != relocations) {
    cache.encoded.clear();
    EncodeTree(*e, &cache.encoded);
    cache.relocations = relocations;
  }
  out->insert(out->end(), cache.encoded.begin(), cache.encoded.end());
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
  LruTouch(*e);
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
  LruRemove(entry);
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
  LruRemove(entry);
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
    json item = {{"id", id.value()},
                 {"typename", e.type_name},
                 {"nbytes", e.nbytes},
                 {"instance_id", instance_id_},
                 {"persisted", e.persisted}};
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

}  // namespace trellis::server

namespace trellis::server {

// ------------------------------------------------------------ memory pressure

bool ObjectTable::Spillable(const ObjectEntry& e) const {
  return e.is_blob && e.state == ObjectState::kSealed &&
         e.residence == Residence::kInMemory && e.readers == 0 && !e.pinned &&
         e.transient_pins == 0 && e.size > 0;
}

void ObjectTable::LruInsert(ObjectEntry& e) {
  if (!e.is_blob || e.in_lru || e.residence != Residence::kInMemory) return;
  e.lru_position = lru_.insert(lru_.end(), e.id);
  e.in_lru = true;
}

void ObjectTable::LruRemove(ObjectEntry& e) {
  if (!e.in_lru) return;
  lru_.erase(e.lru_position);
  e.in_lru = false;
}

void ObjectTable::LruTouch(ObjectEntry& e) {
  if (e.in_lru) lru_.splice(lru_.end(), lru_, e.lru_position);
}

SpillJob ObjectTable::StartSpill(ObjectEntry& e) {
  LruRemove(e);
  e.residence = Residence::kSpilling;
  return {e.id, e.offset, e.size};
}

std::vector<SpillJob> ObjectTable::StartSpills(uint64_t bytes) {
  std::vector<SpillJob> jobs;
  uint64_t chosen = 0;
  for (auto it = lru_.begin(); it != lru_.end() && chosen < bytes;) {
    ObjectEntry& e = entries_.at(*it);
    ++it;  // LruRemove below invalidates e's position, not `it`
    if (!Spillable(e)) continue;
    jobs.push_back(StartSpill(e));
    chosen += e.size;
  }
  return jobs;
}

std::vector<size_t> CheapestRange(const std::vector<ArenaStretch>& stretches,
                                  uint64_t bytes) {
  // Two pointers over each run of adjacent stretches: for every end, the
  // window keeps the latest start that is still long enough, which is the
  // cheapest window ending there (dropping a stretch never adds cost).
  bool found = false;
  uint64_t best_cost = 0;
  size_t best_begin = 0, best_end = 0;
  size_t begin = 0;
  uint64_t length = 0, cost = 0;
  for (size_t end = 0; end < stretches.size(); ++end) {
    const ArenaStretch& s = stretches[end];
    if (end > begin &&
        stretches[end - 1].offset + stretches[end - 1].length != s.offset) {
      begin = end;  // a gap: something that stays in memory
      length = cost = 0;
    }
    length += s.length;
    if (s.spillable) cost += s.length;
    while (length - stretches[begin].length >= bytes) {
      length -= stretches[begin].length;
      if (stretches[begin].spillable) cost -= stretches[begin].length;
      ++begin;
    }
    if (length >= bytes && (!found || cost < best_cost)) {
      found = true;
      best_cost = cost;
      best_begin = begin;
      best_end = end + 1;
    }
  }
  std::vector<size_t> picked;
  if (!found) return picked;
  for (size_t i = best_begin; i < best_end; ++i) {
    if (stretches[i].spillable) picked.push_back(i);
  }
  return picked;
}

std::vector<SpillJob> ObjectTable::StartSpillsFor(uint64_t contiguous,
                                                  uint64_t bytes) {
  std::vector<SpillJob> jobs;
  if (allocator_->largest_free() < contiguous) {
    // Free ranges and spillable blobs (with their ids), in address order.
    std::vector<std::pair<ArenaStretch, ObjectID>> candidates;
    for (auto [offset, length] : allocator_->FreeRanges()) {
      candidates.push_back({{offset, length, false}, ObjectID()});
    }
    for (ObjectID id : lru_) {
      const ObjectEntry& e = entries_.at(id);
      if (Spillable(e)) {
        candidates.push_back(
            {{e.offset, Allocator::AlignedSize(e.size), true}, id});
      }
    }
    std::sort(candidates.begin(), candidates.end(),
              [](const auto& a, const auto& b) {
                return a.first.offset < b.first.offset;
              });
    std::vector<ArenaStretch> stretches;
    stretches.reserve(candidates.size());
    for (const auto& c : candidates) stretches.push_back(c.first);
    for (size_t i : CheapestRange(stretches, contiguous)) {
      ObjectEntry& e = entries_.at(candidates[i].second);
      jobs.push_back(StartSpill(e));
    }
  }
  uint64_t chosen = 0;
  for (const SpillJob& job : jobs) chosen += job.size;
  if (chosen < bytes) {
    std::vector<SpillJob> more = StartSpills(bytes - chosen);
    jobs.insert(jobs.end(), more.begin(), more.end());
  }
  return jobs;
}

Result<std::vector<SpillJob>> ObjectTable::StartEvictions(
    const std::vector<ObjectID>& ids) {
  TRELLIS_ASSIGN_OR_RAISE(std::vector<ObjectID> blobs, BlobsOf(ids));
  for (ObjectID id : blobs) {
    const ObjectEntry& e = entries_.at(id);
    if (e.residence != Residence::kInMemory) continue;
    if (e.readers > 0) {
      return Status::Invalid("cannot evict blob " + id.ToString() +
                             ": it is held by " + std::to_string(e.readers) +
                             " reader(s)");
    }
    if (e.pinned || e.transient_pins > 0) {
      return Status::Invalid("cannot evict blob " + id.ToString() +
                             ": it is pinned");
    }
  }
  std::vector<SpillJob> jobs;
  for (ObjectID id : blobs) {
    ObjectEntry& e = entries_.at(id);
    if (!Spillable(e)) continue;  // empty, or already spilled/on its way
    jobs.push_back(StartSpill(e));
  }
  return jobs;
}

bool ObjectTable::FinishSpill(ObjectID id, bool written) {
  ObjectEntry& e = entries_.at(id);
  assert(e.residence == Residence::kSpilling);
  bool keep_in_memory = !written || e.state == ObjectState::kDeleted ||
                        e.readers > 0 || e.pinned || e.transient_pins > 0;
  if (keep_in_memory) {
    e.residence = Residence::kInMemory;
    if (e.state == ObjectState::kSealed) {
      LruInsert(e);
    } else {
      FreeIfUnused(id);
    }
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
  e.residence = Residence::kInMemory;
  if (e.state == ObjectState::kSealed) {
    LruInsert(e);
  } else {
    FreeIfUnused(id);  // deleted while reloading
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
  if (entries.size() == 1) return CacheOf(*entries[0]).blobs;
  std::vector<ObjectID> blobs;
  std::unordered_set<ObjectID> seen;
  for (const ObjectEntry* e : entries) {
    for (ObjectID blob : CacheOf(*e).blobs) {
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
