// ObjectMeta and Blob: the metadata tree of an object and read-only views of
// the bytes it names.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "trellis/object_id.h"
#include "trellis/status.h"

namespace trellis {

// Keeps the bytes of gotten objects mapped and alive. Created by the client
// when it gets objects; when the last copy of an ObjectMeta/Blob/typed object
// sharing it goes away, the client tells the daemon it no longer reads them.
class Lease;

// The type name of a blob node.
inline constexpr const char* kBlobTypeName = "trellis::Blob";

// A read-only view of a sealed blob in the shared arena. Valid (the bytes stay
// intact, even if the object is deleted meanwhile) as long as this Blob or any
// copy of it lives. Cheap to copy.
class Blob {
 public:
  Blob() = default;
  Blob(ObjectID id, const uint8_t* data, uint64_t size,
       std::shared_ptr<Lease> lease)
      : id_(id), data_(data), size_(size), lease_(std::move(lease)) {}

  ObjectID id() const { return id_; }
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::shared_ptr<Lease>& lease() const { return lease_; }

 private:
  ObjectID id_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  std::shared_ptr<Lease> lease_;
};

// The metadata tree of one object: a type name, user fields (any JSON value)
// and named members, each itself a tree (an object or a blob).
//
// A tree being built for CreateObject has id 0 for the nodes to create; a
// member may also be a reference to an existing object (AddMember(name, id)).
// A tree returned by Client::GetMeta is complete: every node has its id,
// nbytes and instance id, and blob nodes can be opened with GetBlob while the
// tree (or anything holding its lease) lives.
//
// The JSON form is documented in docs/format.md. Not thread-safe for
// concurrent mutation; concurrent const use is fine.
class ObjectMeta {
 public:
  ObjectMeta();
  explicit ObjectMeta(const std::string& type_name);

  // Builds from the JSON form, validating the node shapes.
  static Result<ObjectMeta> FromJson(nlohmann::json tree,
                                     std::shared_ptr<Lease> lease = nullptr);
  const nlohmann::json& tree() const { return tree_; }

  std::string type_name() const;
  ObjectID id() const;
  uint64_t nbytes() const;
  uint64_t instance_id() const;
  bool is_blob() const;

  // User fields. Setting a field replaces any previous value.
  void SetField(const std::string& key, nlohmann::json value);
  bool HasField(const std::string& key) const;
  // ObjectNotFound naming the key when absent.
  Result<nlohmann::json> GetField(const std::string& key) const;
  const nlohmann::json& fields() const;

  // Members. Adding a member with an existing name replaces it.
  void AddMember(const std::string& name, const ObjectMeta& member);
  void AddMember(const std::string& name, ObjectID existing);
  bool HasMember(const std::string& name) const;
  Result<ObjectMeta> GetMember(const std::string& name) const;
  std::vector<std::string> MemberNames() const;

  // For a blob node of a gotten tree: the bytes. Invalid for other nodes or
  // for trees that were not returned by GetMeta.
  Result<Blob> AsBlob() const;
  // Shorthand for GetMember(name) then AsBlob().
  Result<Blob> GetBlobMember(const std::string& name) const;

  const std::shared_ptr<Lease>& lease() const { return lease_; }

 private:
  nlohmann::json tree_;
  std::shared_ptr<Lease> lease_;
};

}  // namespace trellis
