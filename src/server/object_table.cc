#include "server/object_table.h"

#include <fnmatch.h>

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
    if (state.created.erase(id)) entries_.at(id).state = ObjectState::kSealed;
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
  RETURN_NOT_OK(ValidateTree(client, tree, 0));
  return BuildTree(client, tree);
}

void ObjectTable::Hold(ClientState& state, ObjectEntry& entry) {
  state.holds[entry.id]++;
  entry.readers++;
}

json ObjectTable::ExpandTree(const ObjectEntry& entry, ClientId client,
                             std::vector<ObjectID>* held) {
  json node = {{"typename", entry.type_name},
               {"id", entry.id.value()},
               {"nbytes", entry.nbytes},
               {"instance_id", instance_id_}};
  if (entry.is_blob) {
    node["offset"] = entry.offset;
  } else {
    node["fields"] = entry.fields;
    json members = json::object();
    for (const auto& [name, child] : entry.members) {
      members[name] = ExpandTree(entries_.at(child), client, held);
    }
    node["members"] = std::move(members);
  }
  if (held) {
    Hold(clients_.at(client), entries_.at(entry.id));
    held->push_back(entry.id);
  }
  return node;
}

Result<json> ObjectTable::GetTree(ClientId client, ObjectID id,
                                  std::vector<ObjectID>* held) {
  ObjectEntry* e = FindVisible(id);
  if (!e)
    return Status::ObjectNotFound("object " + id.ToString() + " not found");
  if (e->state != ObjectState::kSealed) {
    return Status::NotSealed("object " + id.ToString() + " is not sealed");
  }
  return ExpandTree(*e, client, held);
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
  Hold(clients_.at(client), *e);
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
  FreeBlobMemory(e);
  entries_.erase(it);
}

void ObjectTable::FreeBlobMemory(ObjectEntry& entry) {
  if (entry.is_blob && entry.size > 0) {
    allocator_->Free(entry.offset, entry.size);
    entry.size = 0;
  }
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
