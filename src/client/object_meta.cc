#include <cassert>

#include "client/object_meta_internal.h"
#include "common/lease.h"
#include "common/protocol.h"
#include "common/tree_format.h"
#include "trellis/object.h"

namespace trellis {

using json = protocol::json;

namespace {

const json& EmptyMap() {
  static const json kEmpty = json::object();
  return kEmpty;
}

uint64_t UintField(const json& tree, std::string_view key) {
  auto it = tree.find(key);
  uint64_t value = 0;
  if (it != tree.end()) protocol::AsUint(*it, &value);
  return value;
}

}  // namespace

// ------------------------------------------------------- ObjectMetaAccess

Result<ObjectMeta> ObjectMetaAccess::FromJson(json tree,
                                              std::shared_ptr<Lease> lease) {
  TRELLIS_RETURN_NOT_OK(format::CheckGottenTree<format::JsonNodes>(&tree));
  ObjectMeta meta;
  meta.tree_->node = std::move(tree);
  meta.lease_ = std::move(lease);
  return meta;
}

const json& ObjectMetaAccess::TreeOf(const ObjectMeta& meta) {
  return meta.tree_ ? meta.tree_->node : EmptyMap();
}

const json& ObjectMetaAccess::FieldsOf(const ObjectMeta& meta) {
  const json& tree = TreeOf(meta);
  auto it = tree.find(format::kFieldsKey);
  return it != tree.end() ? *it : EmptyMap();
}

Result<const json*> ObjectMetaAccess::FieldsOfType(const ObjectMeta& meta,
                                                   std::string_view type_name) {
  std::string actual = meta.type_name();
  if (actual != type_name) {
    return Status::Invalid("object " + meta.id().ToString() + " is a " +
                           actual + ", not a " + std::string(type_name));
  }
  return &FieldsOf(meta);
}

void ObjectMetaAccess::SetField(ObjectMeta* meta, const std::string& key,
                                json value) {
  if (!meta->tree_) meta->tree_ = std::make_unique<ObjectMeta::Tree>();
  meta->tree_->node[format::kFieldsKey][key] = std::move(value);
}

// ------------------------------------------------------------- ObjectMeta

ObjectMeta::ObjectMeta() : ObjectMeta(std::string()) {}

ObjectMeta::ObjectMeta(const std::string& type_name)
    : tree_(std::make_unique<Tree>(
          Tree{json{{format::kTypeNameKey, type_name},
                    {format::kFieldsKey, json::object()},
                    {format::kMembersKey, json::object()}}})) {}

ObjectMeta::~ObjectMeta() = default;

ObjectMeta::ObjectMeta(const ObjectMeta& other)
    : tree_(std::make_unique<Tree>(Tree{ObjectMetaAccess::TreeOf(other)})),
      lease_(other.lease_) {}

ObjectMeta& ObjectMeta::operator=(const ObjectMeta& other) {
  if (this != &other) {
    tree_ = std::make_unique<Tree>(Tree{ObjectMetaAccess::TreeOf(other)});
    lease_ = other.lease_;
  }
  return *this;
}

ObjectMeta::ObjectMeta(ObjectMeta&& other) noexcept = default;
ObjectMeta& ObjectMeta::operator=(ObjectMeta&& other) noexcept = default;

Result<ObjectMeta> ObjectMeta::FromJsonString(std::string_view text) {
  json tree = json::parse(text.begin(), text.end(), nullptr,
                          /*allow_exceptions=*/false);
  if (tree.is_discarded()) {
    return Status::Invalid("object tree is not valid JSON");
  }
  return ObjectMetaAccess::FromJson(std::move(tree));
}

std::string ObjectMeta::ToJsonString() const {
  return ObjectMetaAccess::TreeOf(*this).dump(-1, ' ', false,
                                              json::error_handler_t::replace);
}

std::string ObjectMeta::type_name() const {
  const json& tree = ObjectMetaAccess::TreeOf(*this);
  auto it = tree.find(format::kTypeNameKey);
  return it != tree.end() && it->is_string() ? it->get<std::string>() : "";
}

ObjectID ObjectMeta::id() const {
  return ObjectID(UintField(ObjectMetaAccess::TreeOf(*this), format::kIdKey));
}
uint64_t ObjectMeta::nbytes() const {
  return UintField(ObjectMetaAccess::TreeOf(*this), format::kNbytesKey);
}
uint64_t ObjectMeta::instance_id() const {
  return UintField(ObjectMetaAccess::TreeOf(*this), format::kInstanceIdKey);
}
bool ObjectMeta::is_blob() const { return type_name() == kBlobTypeName; }

void ObjectMeta::SetGlobal(bool global) {
  if (!tree_) tree_ = std::make_unique<Tree>();
  if (global) {
    tree_->node[format::kGlobalKey] = true;
  } else {
    tree_->node.erase(std::string(format::kGlobalKey));
  }
}

bool ObjectMeta::is_global() const {
  const json& tree = ObjectMetaAccess::TreeOf(*this);
  auto it = tree.find(format::kGlobalKey);
  return it != tree.end() && it->is_boolean() && it->get<bool>();
}

// ------------------------------------------------------------------ fields

void ObjectMeta::SetField(const std::string& key, std::string_view value) {
  ObjectMetaAccess::SetField(this, key, json(std::string(value)));
}
void ObjectMeta::SetField(const std::string& key, double value) {
  ObjectMetaAccess::SetField(this, key, json(value));
}
void ObjectMeta::SetIntField(const std::string& key, int64_t value) {
  ObjectMetaAccess::SetField(this, key, json(value));
}
void ObjectMeta::SetUintField(const std::string& key, uint64_t value) {
  ObjectMetaAccess::SetField(this, key, json(value));
}
void ObjectMeta::SetBoolField(const std::string& key, bool value) {
  ObjectMetaAccess::SetField(this, key, json(value));
}

Status ObjectMeta::SetFieldJson(const std::string& key,
                                std::string_view json_text) {
  json value = json::parse(json_text.begin(), json_text.end(), nullptr,
                           /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    return Status::Invalid("value for field '" + key + "' is not valid JSON");
  }
  ObjectMetaAccess::SetField(this, key, std::move(value));
  return Status::OK();
}

bool ObjectMeta::HasField(const std::string& key) const {
  return ObjectMetaAccess::FieldsOf(*this).contains(key);
}

std::vector<std::string> ObjectMeta::FieldNames() const {
  std::vector<std::string> names;
  for (const auto& [name, value] : ObjectMetaAccess::FieldsOf(*this).items()) {
    names.push_back(name);
  }
  return names;
}

namespace {

// The field `key` of `meta`, or ObjectNotFound naming it.
Result<const json*> FindField(const ObjectMeta& meta, const std::string& key) {
  const json& fields = ObjectMetaAccess::FieldsOf(meta);
  auto it = fields.find(key);
  if (it == fields.end()) {
    return Status::ObjectNotFound(meta.type_name() + " has no field '" + key +
                                  "'");
  }
  return &*it;
}

Status NotA(const ObjectMeta& meta, const std::string& key, const char* what) {
  return Status::Invalid(meta.type_name() + " field '" + key + "' is not " +
                         what);
}

}  // namespace

Result<std::string> ObjectMeta::GetStringField(const std::string& key) const {
  TRELLIS_ASSIGN_OR_RAISE(const json* v, FindField(*this, key));
  if (!v->is_string()) return NotA(*this, key, "a string");
  return v->get<std::string>();
}

Result<int64_t> ObjectMeta::GetIntField(const std::string& key) const {
  TRELLIS_ASSIGN_OR_RAISE(const json* v, FindField(*this, key));
  if (v->is_number_unsigned()) {
    if (v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      return NotA(*this, key, "an integer that fits int64");
    }
    return static_cast<int64_t>(v->get<uint64_t>());
  }
  if (!v->is_number_integer()) return NotA(*this, key, "an integer");
  return v->get<int64_t>();
}

Result<uint64_t> ObjectMeta::GetUintField(const std::string& key) const {
  TRELLIS_ASSIGN_OR_RAISE(const json* v, FindField(*this, key));
  uint64_t value = 0;
  if (!protocol::AsUint(*v, &value)) {
    return NotA(*this, key, "a non-negative integer");
  }
  return value;
}

Result<double> ObjectMeta::GetDoubleField(const std::string& key) const {
  TRELLIS_ASSIGN_OR_RAISE(const json* v, FindField(*this, key));
  if (!v->is_number()) return NotA(*this, key, "a number");
  return v->get<double>();
}

Result<bool> ObjectMeta::GetBoolField(const std::string& key) const {
  TRELLIS_ASSIGN_OR_RAISE(const json* v, FindField(*this, key));
  if (!v->is_boolean()) return NotA(*this, key, "a boolean");
  return v->get<bool>();
}

Result<std::string> ObjectMeta::GetFieldJson(const std::string& key) const {
  TRELLIS_ASSIGN_OR_RAISE(const json* v, FindField(*this, key));
  return v->dump(-1, ' ', false, json::error_handler_t::replace);
}

// ----------------------------------------------------------------- members

void ObjectMeta::AddMember(const std::string& name, const ObjectMeta& member) {
  if (!tree_) tree_ = std::make_unique<Tree>();
  tree_->node[format::kMembersKey][name] = ObjectMetaAccess::TreeOf(member);
}

void ObjectMeta::AddMember(const std::string& name, ObjectID existing) {
  if (!tree_) tree_ = std::make_unique<Tree>();
  tree_->node[format::kMembersKey][name] =
      json{{format::kIdKey, existing.value()}};
}

bool ObjectMeta::HasMember(const std::string& name) const {
  const json& tree = ObjectMetaAccess::TreeOf(*this);
  auto it = tree.find(format::kMembersKey);
  return it != tree.end() && it->contains(name);
}

Result<ObjectMeta> ObjectMeta::GetMember(const std::string& name) const {
  const json& tree = ObjectMetaAccess::TreeOf(*this);
  auto it = tree.find(format::kMembersKey);
  if (it == tree.end() || !it->contains(name)) {
    return Status::ObjectNotFound(type_name() + " has no member '" + name +
                                  "'");
  }
  ObjectMeta member;
  member.tree_->node = (*it)[name];
  member.lease_ = lease_;
  return member;
}

std::vector<std::string> ObjectMeta::MemberNames() const {
  std::vector<std::string> names;
  const json& tree = ObjectMetaAccess::TreeOf(*this);
  auto it = tree.find(format::kMembersKey);
  if (it == tree.end()) return names;
  for (const auto& [name, member] : it->items()) names.push_back(name);
  return names;
}

Result<Blob> ObjectMeta::AsBlob() const {
  if (!is_blob()) {
    return Status::Invalid(type_name() + " " + id().ToString() +
                           " is not a blob");
  }
  const json& tree = ObjectMetaAccess::TreeOf(*this);
  auto offset_it = tree.find(format::kOffsetKey);
  uint64_t offset = 0;
  if (!lease_ || offset_it == tree.end() ||
      !protocol::AsUint(*offset_it, &offset)) {
    return Status::Invalid("blob " + id().ToString() +
                           " was not gotten from a client; its bytes are not "
                           "mapped");
  }
  const uint8_t* data = lease_->BlobData(id(), offset, nbytes());
  if (!data) {
    return Status::Invalid("blob " + id().ToString() +
                           " lies outside the arena");
  }
  return Blob(id(), data, nbytes(), lease_);
}

Result<Blob> ObjectMeta::GetBlobMember(const std::string& name) const {
  TRELLIS_ASSIGN_OR_RAISE(ObjectMeta member, GetMember(name));
  return member.AsBlob();
}

}  // namespace trellis
