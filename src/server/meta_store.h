// MetaStore: where names and published (persisted) object trees live.
//
// The daemon talks to this interface only; which backend serves it (local,
// or etcd in a multi-node deployment) is decided once, in MakeMetaStore.
//
// Contract for all backends: calls are made from the daemon's event loop
// thread; a backend that needs I/O does it without blocking that thread for
// long, and reports names bound by others through the name listener.
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "trellis/object_id.h"
#include "trellis/status.h"

namespace trellis::server {

class MetaStore {
 public:
  using NameListener = std::function<void(const std::string&, ObjectID)>;

  virtual ~MetaStore() = default;
  virtual std::string backend() const = 0;

  // Binds `name` to `id`. With overwrite=false a bound name is ObjectExists.
  virtual Status PutName(const std::string& name, ObjectID id,
                         bool overwrite) = 0;
  // ObjectNotFound naming `name` if unbound.
  virtual Result<ObjectID> GetName(const std::string& name) const = 0;
  virtual Status DropName(const std::string& name) = 0;
  // Names matching the glob `pattern`, sorted, at most `limit`.
  virtual std::vector<std::pair<std::string, ObjectID>> ListNames(
      const std::string& pattern, size_t limit) const = 0;
  // Unbinds every name bound to `id` (the object was deleted).
  virtual void DropNamesOf(ObjectID id) = 0;

  // Publishes the tree of a persisted object cluster-wide (local: records it).
  virtual Status Publish(ObjectID id, const nlohmann::json& tree) = 0;
  virtual void Unpublish(ObjectID id) = 0;
  virtual bool IsPublished(ObjectID id) const = 0;

  // Called after every successful PutName, on the event loop thread.
  void SetNameListener(NameListener listener) {
    listener_ = std::move(listener);
  }

 protected:
  void NotifyNameBound(const std::string& name, ObjectID id) {
    if (listener_) listener_(name, id);
  }

 private:
  NameListener listener_;
};

// The embedded backend: everything in this process, nothing shared.
std::unique_ptr<MetaStore> MakeLocalMetaStore();

}  // namespace trellis::server
