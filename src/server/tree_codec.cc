#include "server/tree_codec.h"

#include <algorithm>
#include <cassert>
#include <unordered_set>

#include "trellis/object.h"

namespace trellis::server {
namespace {

Status TooDeep() {
  return Status::Invalid(
      "object tree nests deeper than a GetMeta reply can carry (" +
      std::to_string(kMaxTreeNesting) +
      " levels of maps and arrays, each tree level taking two, objects it "
      "references included)");
}

}  // namespace

bool IsReference(const json& node, ObjectID* id) {
  auto it = node.find(format::kIdKey);
  uint64_t value = 0;
  if (it == node.end() || !protocol::AsUint(*it, &value) || value == 0) {
    return false;
  }
  if (id) *id = ObjectID(value);
  return true;
}

Status TreeCodec::Validate(ClientId client, const json& tree) const {
  if (IsReference(tree)) {
    return Status::Invalid("the root of a new object must be a new node");
  }
  return ValidateNode(client, tree, kMaxTreeNesting);
}

Status TreeCodec::ValidateNode(ClientId client, const json& node,
                               size_t budget) const {
  format::NodeShape<const json*> shape;
  TRELLIS_RETURN_NOT_OK(format::CheckNodeShape<format::JsonNodes>(
      &node, format::TreeKind::kBuilding, &shape));
  if (shape.reference) {
    const ObjectEntry* e = entries_->FindAny(ObjectID(shape.id));
    if (!e || e->state == ObjectState::kDeleted) {
      return Status::ObjectNotFound("member " + ObjectID(shape.id).ToString() +
                                    " does not exist");
    }
    if (e->state == ObjectState::kCreated && e->creator != client) {
      return Status::NotSealed("member " + ObjectID(shape.id).ToString() +
                               " is being written by another client");
    }
    return e->nesting > budget ? TooDeep() : Status::OK();
  }
  // The expanded node is a map holding a `fields` map and a `members` map.
  if (budget < 2) return TooDeep();
  if (shape.fields && protocol::NestingDepth(*shape.fields) > budget - 1) {
    return TooDeep();
  }
  if (shape.members) {
    for (const auto& [name, member] : shape.members->items()) {
      Status st = ValidateNode(client, member, budget - 2);
      if (!st.ok()) {
        return Status(st.code(), "member '" + name + "': " + st.message());
      }
    }
  }
  return Status::OK();
}

const ObjectEntry& TreeCodec::Member(ObjectID id) const {
  const ObjectEntry* e = entries_->FindAny(id);
  assert(e);  // members outlive their referrers
  return *e;
}

uint8_t TreeCodec::Nesting(const json& fields, const Members& members) const {
  size_t deepest = 0;
  for (const auto& m : members) {
    deepest = std::max<size_t>(deepest, Member(m.second).nesting);
  }
  size_t nesting = 1 + std::max(protocol::NestingDepth(fields), 1 + deepest);
  assert(nesting <= kMaxTreeNesting);  // Validate checked it
  return static_cast<uint8_t>(nesting);
}

template <typename Visit>
void TreeCodec::ForEachBlob(const Members& members, Visit visit) const {
  std::unordered_set<ObjectID> seen;
  std::vector<const ObjectEntry*> stack;
  auto push = [&](const Members& ms) {
    for (auto m = ms.rbegin(); m != ms.rend(); ++m) {
      stack.push_back(&Member(m->second));
    }
  };
  push(members);
  while (!stack.empty()) {
    const ObjectEntry* e = stack.back();
    stack.pop_back();
    if (!seen.insert(e->id).second) continue;
    if (e->is_blob) visit(*e);
    push(e->members);
  }
}

uint64_t TreeCodec::DistinctBlobBytes(const Members& members) const {
  uint64_t bytes = 0;
  ForEachBlob(members, [&](const ObjectEntry& blob) { bytes += blob.size; });
  return bytes;
}

void TreeCodec::BuildCache(const ObjectEntry& entry) const {
  auto cache = std::make_unique<TreeCache>();
  if (entry.is_blob) cache->blobs.push_back(entry.id);
  ForEachBlob(entry.members, [&](const ObjectEntry& blob) {
    cache->blobs.push_back(blob.id);
  });
  entry.tree_cache = std::move(cache);
}

const std::vector<uint8_t>& TreeCodec::Encoded(const ObjectEntry& entry,
                                               uint64_t relocations) const {
  TreeCache& cache = CacheOf(entry);
  if (cache.encoded.empty() || cache.relocations != relocations) {
    cache.encoded.clear();
    Encode(entry, &cache.encoded);
    cache.relocations = relocations;
  }
  return cache.encoded;
}

json TreeCodec::Expand(const ObjectEntry& entry) const {
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
      members[name] = Expand(Member(child));
    }
  }
  return node;
}

void TreeCodec::Encode(const ObjectEntry& entry, std::vector<uint8_t>* out,
                       const BlobPositions* positions) const {
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
      protocol::AppendMsgpackUint(
          positions ? positions->at(entry.id) : entry.offset, out);
    }
    return;
  }
  protocol::AppendMsgpackString("fields", out);
  json::to_msgpack(entry.fields, *out);
  protocol::AppendMsgpackString("members", out);
  protocol::AppendMsgpackMapHeader(entry.members.size(), out);
  for (const auto& [name, child] : entry.members) {
    protocol::AppendMsgpackString(name, out);
    Encode(Member(child), out, positions);
  }
}

}  // namespace trellis::server
