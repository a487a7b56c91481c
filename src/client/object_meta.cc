#include <cassert>

#include "common/lease.h"
#include "common/protocol.h"
#include "trellis/object.h"

namespace trellis {

using nlohmann::json;

ObjectMeta::ObjectMeta() : ObjectMeta(std::string()) {}

ObjectMeta::ObjectMeta(const std::string& type_name)
    : tree_({{"typename", type_name},
             {"fields", json::object()},
             {"members", json::object()}}) {}

namespace {
Status ValidateNode(const json& node, int depth) {
  if (depth > 64) return Status::Invalid("object tree nests too deep");
  if (!node.is_object()) return Status::Invalid("tree node must be a map");
  auto t = node.find("typename");
  auto id = node.find("id");
  uint64_t ignored;
  bool reference = id != node.end() && protocol::AsUint(*id, &ignored);
  if (!reference && (t == node.end() || !t->is_string())) {
    return Status::Invalid("tree node has no string 'typename'");
  }
  auto fields = node.find("fields");
  if (fields != node.end() && !fields->is_object()) {
    return Status::Invalid("'fields' must be a map");
  }
  auto members = node.find("members");
  if (members != node.end()) {
    if (!members->is_object())
      return Status::Invalid("'members' must be a map");
    for (const auto& [name, member] : members->items()) {
      TRELLIS_RETURN_NOT_OK(ValidateNode(member, depth + 1));
    }
  }
  return Status::OK();
}
}  // namespace

Result<ObjectMeta> ObjectMeta::FromJson(json tree,
                                        std::shared_ptr<Lease> lease) {
  TRELLIS_RETURN_NOT_OK(ValidateNode(tree, 0));
  ObjectMeta meta;
  meta.tree_ = std::move(tree);
  meta.lease_ = std::move(lease);
  return meta;
}

std::string ObjectMeta::type_name() const {
  auto it = tree_.find("typename");
  return it != tree_.end() && it->is_string() ? it->get<std::string>() : "";
}

namespace {
uint64_t UintField(const json& tree, const char* key) {
  auto it = tree.find(key);
  uint64_t value = 0;
  if (it != tree.end()) protocol::AsUint(*it, &value);
  return value;
}
}  // namespace

ObjectID ObjectMeta::id() const { return ObjectID(UintField(tree_, "id")); }
uint64_t ObjectMeta::nbytes() const { return UintField(tree_, "nbytes"); }
uint64_t ObjectMeta::instance_id() const {
  return UintField(tree_, "instance_id");
}
bool ObjectMeta::is_blob() const { return type_name() == kBlobTypeName; }

void ObjectMeta::SetField(const std::string& key, json value) {
  tree_["fields"][key] = std::move(value);
}

bool ObjectMeta::HasField(const std::string& key) const {
  return fields().contains(key);
}

Result<json> ObjectMeta::GetField(const std::string& key) const {
  const json& f = fields();
  auto it = f.find(key);
  if (it == f.end()) {
    return Status::ObjectNotFound(type_name() + " has no field '" + key + "'");
  }
  return *it;
}

const json& ObjectMeta::fields() const {
  static const json kEmpty = json::object();
  auto it = tree_.find("fields");
  return it != tree_.end() ? *it : kEmpty;
}

void ObjectMeta::AddMember(const std::string& name, const ObjectMeta& member) {
  tree_["members"][name] = member.tree_;
}

void ObjectMeta::AddMember(const std::string& name, ObjectID existing) {
  tree_["members"][name] = json{{"id", existing.value()}};
}

bool ObjectMeta::HasMember(const std::string& name) const {
  auto it = tree_.find("members");
  return it != tree_.end() && it->contains(name);
}

Result<ObjectMeta> ObjectMeta::GetMember(const std::string& name) const {
  auto it = tree_.find("members");
  if (it == tree_.end() || !it->contains(name)) {
    return Status::ObjectNotFound(type_name() + " has no member '" + name +
                                  "'");
  }
  ObjectMeta member;
  member.tree_ = (*it)[name];
  member.lease_ = lease_;
  return member;
}

std::vector<std::string> ObjectMeta::MemberNames() const {
  std::vector<std::string> names;
  auto it = tree_.find("members");
  if (it == tree_.end()) return names;
  for (const auto& [name, member] : it->items()) names.push_back(name);
  return names;
}

Result<Blob> ObjectMeta::AsBlob() const {
  if (!is_blob()) {
    return Status::Invalid(type_name() + " " + id().ToString() +
                           " is not a blob");
  }
  auto offset_it = tree_.find("offset");
  uint64_t offset = 0;
  if (!lease_ || offset_it == tree_.end() ||
      !protocol::AsUint(*offset_it, &offset)) {
    return Status::Invalid("blob " + id().ToString() +
                           " was not gotten from a client; its bytes are not "
                           "mapped");
  }
  return Blob(id(), lease_->arena_base() + offset, nbytes(), lease_);
}

Result<Blob> ObjectMeta::GetBlobMember(const std::string& name) const {
  TRELLIS_ASSIGN_OR_RAISE(ObjectMeta member, GetMember(name));
  return member.AsBlob();
}

}  // namespace trellis
