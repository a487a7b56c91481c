// ObjectMeta and Blob: the metadata tree of an object and read-only views of
// the bytes it names.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "trellis/object_id.h"
#include "trellis/status.h"

namespace trellis {

// Keeps the bytes of gotten objects mapped and alive. Created by the client
// when it gets objects; when the last copy of an ObjectMeta/Blob/typed object
// sharing it goes away, the client tells the daemon it no longer reads them.
// (Internal: src/common/lease.h.)
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
// The JSON form is documented in docs/format.md; fields of any JSON type
// can be set and read as JSON text (SetFieldJson/GetFieldJson), the common
// scalar types directly. Copies are deep (members included) and share the
// lease. Not thread-safe for concurrent mutation; concurrent const use is
// fine.
class ObjectMeta {
 public:
  ObjectMeta();
  explicit ObjectMeta(const std::string& type_name);
  ~ObjectMeta();
  ObjectMeta(const ObjectMeta& other);
  ObjectMeta& operator=(const ObjectMeta& other);
  ObjectMeta(ObjectMeta&& other) noexcept;
  ObjectMeta& operator=(ObjectMeta&& other) noexcept;

  // Parses and validates the JSON form (node shapes as docs/format.md).
  // Invalid if `text` is not JSON, or not a tree (naming what is wrong).
  static Result<ObjectMeta> FromJsonString(std::string_view text);
  // The JSON form (binary values, which only gotten trees can hold, appear
  // as {"bytes": [...], "subtype": null}).
  std::string ToJsonString() const;

  std::string type_name() const;
  ObjectID id() const;
  uint64_t nbytes() const;
  uint64_t instance_id() const;
  bool is_blob() const;
  // A global object (docs/format.md, "Global objects"): its members are
  // objects of any instance of the cluster, given as references
  // (AddMember(name, id)) to persisted objects or objects of the creating
  // instance (persisted by CreateObject). A gotten global tree lists each
  // member's id, typename, nbytes, fields and instance_id (where it lives),
  // without its members or blobs: GetMeta(member id, {.fetch = true}) reads
  // one. Global objects hold no bytes of their own.
  void SetGlobal(bool global = true);
  bool is_global() const;

  // --- user fields ----------------------------------------------------------
  // Setting a field replaces any previous value.
  void SetField(const std::string& key, std::string_view value);
  void SetField(const std::string& key, const char* value) {
    SetField(key, std::string_view(value));
  }
  void SetField(const std::string& key, double value);
  // Any integer type, and bool (stored as a JSON boolean).
  template <typename T>
  requires std::is_integral_v<T>
  void SetField(const std::string& key, T value) {
    if constexpr (std::is_same_v<T, bool>) {
      SetBoolField(key, value);
    } else if constexpr (std::is_signed_v<T>) {
      SetIntField(key, static_cast<int64_t>(value));
    } else {
      SetUintField(key, static_cast<uint64_t>(value));
    }
  }
  // Sets the field to the JSON value `json_text` (an array, a map, ...).
  // Invalid if it does not parse; the field is then left as it was.
  Status SetFieldJson(const std::string& key, std::string_view json_text);

  bool HasField(const std::string& key) const;
  std::vector<std::string> FieldNames() const;
  // Typed reads: ObjectNotFound naming the key when absent, Invalid naming
  // it when the value is not of that type (GetIntField: an integer that
  // fits int64; GetUintField: a non-negative integer; GetDoubleField: any
  // number).
  Result<std::string> GetStringField(const std::string& key) const;
  Result<int64_t> GetIntField(const std::string& key) const;
  Result<uint64_t> GetUintField(const std::string& key) const;
  Result<double> GetDoubleField(const std::string& key) const;
  Result<bool> GetBoolField(const std::string& key) const;
  // The field's value as JSON text, whatever its type.
  Result<std::string> GetFieldJson(const std::string& key) const;

  // --- members --------------------------------------------------------------
  // Adding a member with an existing name replaces it.
  void AddMember(const std::string& name, const ObjectMeta& member);
  void AddMember(const std::string& name, ObjectID existing);
  bool HasMember(const std::string& name) const;
  Result<ObjectMeta> GetMember(const std::string& name) const;
  std::vector<std::string> MemberNames() const;

  // For a blob node of a gotten tree: the bytes. Invalid for other nodes,
  // for trees that were not returned by GetMeta, and for a blob the daemon
  // placed outside the arena.
  Result<Blob> AsBlob() const;
  // Shorthand for GetMember(name) then AsBlob().
  Result<Blob> GetBlobMember(const std::string& name) const;

  const std::shared_ptr<Lease>& lease() const { return lease_; }

 private:
  friend class ObjectMetaAccess;  // src/client/object_meta_internal.h
  struct Tree;                    // the JSON DOM, opaque here

  void SetIntField(const std::string& key, int64_t value);
  void SetUintField(const std::string& key, uint64_t value);
  void SetBoolField(const std::string& key, bool value);

  std::unique_ptr<Tree> tree_;  // null only when moved from: reads as {}
  std::shared_ptr<Lease> lease_;
};

}  // namespace trellis
