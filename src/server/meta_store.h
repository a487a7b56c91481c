// MetaStore: where names, published (persisted) object trees and the
// cluster's instances live.
//
// The daemon talks to this interface only; which backend serves it (local,
// or etcd in a multi-node deployment) is decided once, at start-up.
//
// Contract for all backends:
// * Every call is made on the daemon's loop thread, returns at once and never
//   blocks on I/O.
// * `done` runs exactly once, on the loop thread: either before the call
//   returns (the local backend) or later (a remote backend posts it to the
//   loop). Callers must be correct either way.
// * Destroying the store drops the completions still pending: they are never
//   called.
// * Errors: ObjectNotFound for unbound names and unpublished ids,
//   ObjectExists for PutName(overwrite=false) on a bound name, Invalid for an
//   empty name, IOError/Disconnected naming the backing service when it
//   cannot be reached.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "trellis/object_id.h"
#include "trellis/status.h"

namespace trellis::server {

// What an instance tells the cluster about itself (etcd: under a lease).
struct InstanceInfo {
  uint16_t instance_id = 0;  // assigned by Register
  std::string hostname;
  std::string ipc_socket;
  std::string rpc_endpoint;  // "host:port", empty if no RPC server
  uint64_t arena_size = 0;
  uint64_t arena_used = 0;
};

class MetaStore {
 public:
  template <typename T>
  using Callback = std::function<void(Result<T>)>;
  using StatusCallback = std::function<void(Status)>;
  using NameListener = std::function<void(const std::string&, ObjectID)>;
  using NameList = std::vector<std::pair<std::string, ObjectID>>;

  virtual ~MetaStore() = default;
  // "local", "etcd", ...
  virtual std::string backend() const = 0;
  // The name of the cluster this daemon is a member of; "" for the local
  // backend (a cluster of one).
  virtual std::string cluster_name() const { return std::string(); }

  // Registers this daemon and assigns it an instance id unique in the
  // cluster (self.instance_id is ignored). The local backend assigns the id
  // it was made with, or a random one. Called once, before anything else.
  virtual void Register(InstanceInfo self, Callback<uint16_t> done) = 0;

  // Binds `name` to `id`. With overwrite=false a bound name is ObjectExists.
  virtual void PutName(const std::string& name, ObjectID id, bool overwrite,
                       StatusCallback done) = 0;
  // ObjectNotFound naming `name` if unbound.
  virtual void GetName(const std::string& name, Callback<ObjectID> done) = 0;
  // ObjectNotFound naming `name` if unbound.
  virtual void DropName(const std::string& name, StatusCallback done) = 0;
  // Names matching the glob `pattern` (fnmatch), sorted, at most `limit`.
  virtual void ListNames(const std::string& pattern, size_t limit,
                         Callback<NameList> done) = 0;
  // Unbinds every name bound to `id` (none is fine): the object was deleted.
  virtual void DropNamesOf(ObjectID id, StatusCallback done) = 0;

  // Publishes the tree of a persisted object cluster-wide (replacing an
  // earlier tree of `id`).
  virtual void Publish(ObjectID id, const nlohmann::json& tree,
                       StatusCallback done) = 0;
  // Withdraws a tree this daemon published (an id never published is
  // fine; a backend may skip ids it never published, so withdrawing a
  // local replica never touches its original's tree).
  virtual void Unpublish(ObjectID id, StatusCallback done) = 0;
  // Withdraws the tree of a global object, whichever instance published it
  // (an id not published is fine).
  virtual void UnpublishGlobal(ObjectID id, StatusCallback done) {
    Unpublish(id, std::move(done));
  }
  // The published tree of a persisted object of any instance;
  // ObjectNotFound if `id` is not published.
  virtual void GetPublished(ObjectID id, Callback<nlohmann::json> done) = 0;

  // The registered instances (local: just this one).
  virtual void ListInstances(Callback<std::vector<InstanceInfo>> done) = 0;
  // Tells the store this daemon's current arena use, for the member list
  // (InstanceInfo::arena_used); the daemon calls it now and then. Never
  // blocks, no completion; a remote backend publishes it when it sees fit.
  virtual void UpdateUsage(uint64_t arena_used) {}

  // Called on the loop thread for every name bound (by this daemon, or, in a
  // cluster, by others): by the local backend inside PutName, before its
  // `done`; by a remote one whenever it learns of the binding, before or
  // after the binder's `done`. Set once, before the first call.
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

// The embedded backend: everything in this process, nothing shared. Every
// call completes before it returns. Register assigns `instance_id`, or, if
// it is 0, a random id in 1..65535.
std::unique_ptr<MetaStore> MakeLocalMetaStore(uint16_t instance_id = 0);

}  // namespace trellis::server
