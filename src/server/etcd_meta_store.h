// The etcd backend of the MetaStore: names, published trees and the member
// list of a cluster of trellisd instances, kept in a real etcd v3 server
// through EtcdClient (etcd_client.h). One daemon with this backend and others
// on the same etcd and cluster name form one cluster: a name bound on one is
// seen by all.
//
// Keys (docs/operations.md, "Running a cluster by hand"), under
// /trellis/<cluster>/:
//   instances/<id decimal>  InstanceInfo JSON, attached to the instance's
//                           lease (TTL options.lease_ttl, kept alive)
//   next_instance           the next instance id to hand out (decimal);
//                           taken by compare-and-swap, never reused
//   names/<name>            the bound ObjectID as ObjectID::ToString()
//   objects/<id>            the published tree (JSON) of a persisted object,
//                           <id> as ObjectID::ToString()
//
// Threads. The loop thread only queues work and runs completions. All etcd
// calls run on threads this backend owns:
// * `options.workers` request workers take the MetaStore calls in order of
//   arrival; a call that waited in the queue longer than options.timeout
//   fails without being sent (so every call answers within about twice the
//   timeout even when etcd hangs and calls pile up);
// * one lease thread, so that keep-alives never wait behind a slow request:
//   a keep-alive every options.keepalive_interval; when etcd says the lease
//   is gone (etcd was unreachable for longer than the TTL) it grants a new
//   one and puts the instance key again with the SAME instance id; it also
//   rewrites the instance key when UpdateUsage reported a new arena use
//   (at most every options.usage_interval);
// * the name watch's thread (EtcdWatch): every name bound anywhere in the
//   cluster is reported to the NameListener (posted to the loop). After an
//   etcd outage the watch resumes at the revision after the last one it
//   delivered, so bindings made meanwhile are replayed in order; if etcd
//   compacted that history away, it re-reads every name instead and reports
//   each (a resync; listeners must tolerate repeats: NameWaiters does).
// Completions and notifications reach the loop through `post`. Why real
// time and not the daemon's Clock: the lease TTL runs on etcd's clock, so
// keep-alives must follow the wall clock whatever a test's fake clock says.
//
// GetName, ListNames, GetPublished and ListInstances read etcd directly
// (linearizable reads, no cache): a reader that starts after a binder's
// PutName completed always sees the binding, on any node.
//
// etcd down: every call fails with the EtcdClient error, prefixed with what
// was being done, e.g. Disconnected "cannot bind name 'x': etcd unreachable
// (http://10.0.0.1:2379): Couldn't connect to server", or Timeout when etcd
// does not answer; nothing hangs. Registration, the lease and the watch
// recover by themselves when etcd is back; no daemon restart is needed.
// An etcd whose data was wiped is a new cluster (instance ids would be
// handed out again): restart the daemons.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "server/etcd_client.h"
#include "server/meta_store.h"

namespace trellis::server {

struct EtcdMetaStoreOptions {
  // etcd client URLs, "http://HOST:PORT" or "HOST:PORT"; at least one.
  std::vector<std::string> endpoints;
  // Daemons with the same cluster name on the same etcd share names and
  // trees. Non-empty, no '/'.
  std::string cluster = "trellis";
  // The instance's lease: a daemon whose keep-alives stop (it died, or lost
  // etcd) drops out of the member list this long after the last one. etcd
  // raises TTLs below its minimum (2 s with default settings).
  std::chrono::seconds lease_ttl = std::chrono::seconds(3);
  std::chrono::milliseconds keepalive_interval = std::chrono::seconds(1);
  // Bound on each etcd call (EtcdOptions::timeout).
  std::chrono::milliseconds timeout = std::chrono::seconds(2);
  // How often at most a changed arena use is written to the instance key.
  std::chrono::milliseconds usage_interval = std::chrono::seconds(5);
  // Request worker threads (>= 1).
  size_t workers = 2;
  // On destruction, revoke the lease (the instance leaves the member list at
  // once) if the last keep-alive succeeded. False leaves it to expire, as a
  // crash would (tests).
  bool revoke_on_close = true;
  // The name watch's reconnection backoff (EtcdOptions).
  std::chrono::milliseconds watch_backoff_min = std::chrono::milliseconds(50);
  std::chrono::milliseconds watch_backoff_max = std::chrono::seconds(1);
};

// What the backend knows about its connection; any thread.
struct EtcdMetaStoreStats {
  uint16_t instance_id = 0;     // 0 until registered
  int64_t lease = 0;            // the current lease id, 0 until registered
  bool lease_alive = false;     // the last keep-alive (or re-grant) succeeded
  uint64_t lease_regrants = 0;  // leases found gone and granted again
  uint64_t keepalive_failures = 0;  // keep-alives etcd did not answer
  bool watch_connected = false;     // the name watch's stream is up
  uint64_t watch_resyncs = 0;       // full re-reads of the names (after
                                    // compaction)
  uint64_t watch_compactions = 0;   // resumes that found history compacted
  uint64_t usage_updates = 0;       // instance key rewrites for arena_used
};

class EtcdMetaStore final : public MetaStore {
 public:
  // Runs `fn` on the daemon's loop thread, later (never inside the call).
  // Called from the backend's threads; must be thread-safe and must accept
  // calls until the store is destroyed.
  using Post = std::function<void(std::function<void()>)>;

  // Validates the options (Invalid) and starts the worker threads. Does not
  // contact etcd: Register does, and fails if etcd cannot be reached.
  static Result<std::unique_ptr<EtcdMetaStore>> Make(
      EtcdMetaStoreOptions options, Post post);
  // On the loop thread. Drops pending completions (never called), stops
  // the watch, joins the threads (each may be inside an etcd call: up to
  // options.timeout), then revokes the lease (see revoke_on_close), so it
  // may block for a few timeouts when etcd hangs.
  ~EtcdMetaStore() override;

  std::string backend() const override { return "etcd"; }
  std::string cluster_name() const override { return options_.cluster; }

  // Takes the next id from next_instance (Invalid once 65535 ids have been
  // handed out in this cluster: ids are never reused, they are part of
  // ObjectIDs), grants the lease, creates instances/<id>, starts the name
  // watch and the keep-alives. Invalid if called twice.
  void Register(InstanceInfo self, Callback<uint16_t> done) override;
  void UpdateUsage(uint64_t arena_used) override;

  void PutName(const std::string& name, ObjectID id, bool overwrite,
               StatusCallback done) override;
  void GetName(const std::string& name, Callback<ObjectID> done) override;
  void DropName(const std::string& name, StatusCallback done) override;
  void ListNames(const std::string& pattern, size_t limit,
                 Callback<NameList> done) override;
  // Deletes each name whose value is `id` at the revision read (a name
  // rebound meanwhile is left alone). Calls queued together share one read
  // of the names. An id never bound through this store nor seen bound to an
  // object of this instance by the watch completes at once, without etcd:
  // only the daemon that holds an object can name it (Store::PutName), so
  // deleting unnamed objects works, and costs nothing, while etcd is down.
  void DropNamesOf(ObjectID id, StatusCallback done) override;

  void Publish(ObjectID id, const nlohmann::json& tree,
               StatusCallback done) override;
  // Like DropNamesOf, an id this store never published completes at once.
  void Unpublish(ObjectID id, StatusCallback done) override;
  void UnpublishGlobal(ObjectID id, StatusCallback done) override;
  void GetPublished(ObjectID id, Callback<nlohmann::json> done) override;

  // The live members (instance keys whose lease is alive), by id.
  void ListInstances(Callback<std::vector<InstanceInfo>> done) override;

  // "/trellis/<cluster>/".
  const std::string& prefix() const { return prefix_; }
  EtcdMetaStoreStats stats() const;

 private:
  // A call's work, run on a worker: returns what to run on the loop.
  using Completion = std::function<void()>;
  struct Job {
    std::chrono::steady_clock::time_point deadline;
    // `late` is the error to answer with instead of running (null: run).
    std::function<Completion(const Status* late)> run;
  };
  struct DropBatch;

  EtcdMetaStore(EtcdMetaStoreOptions options, Post post,
                std::unique_ptr<etcd::EtcdClient> client);

  // Queues `work` (on a worker) whose result goes to `done` (on the loop);
  // an error is prefixed with `what` ("cannot bind name 'x'").
  template <typename R>
  void Submit(std::string what, std::function<R()> work,
              std::function<void(R)> done);
  void Enqueue(Job job);
  void WorkerLoop();
  void PostToLoop(Completion fn);
  Status Annotated(const std::string& what, const Status& st);

  Result<uint16_t> DoRegister(InstanceInfo self);
  Result<uint16_t> AllocateInstanceId();
  void RunDropBatch();

  void LeaseLoop();
  void LeaseTick();
  std::string InstanceJson();

  void StartWatch(int64_t start_revision);
  void OnNameEvents(const std::vector<etcd::WatchEvent>& events);
  void OnWatchState(const etcd::WatchState& state);
  void Resync();
  void PostNames(NameList names);
  // Deletes the published tree of `id`; `failure` + id prefixes the error.
  void DeleteTree(ObjectID id, const std::string& failure, StatusCallback done);

  std::string NameKey(const std::string& name) const;
  std::string ObjectKey(ObjectID id) const;
  std::string InstanceKey(uint16_t id) const;

  const EtcdMetaStoreOptions options_;
  const Post post_;
  const std::unique_ptr<etcd::EtcdClient> client_;
  const std::string prefix_;  // /trellis/<cluster>/
  const std::string endpoints_text_;

  // Loop thread only. Completions check it: false once destruction began.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  bool register_called_ = false;
  // Loop thread only: ids that may have names in etcd (bound through this
  // store, or seen by the watch bound to an object of this instance), and
  // ids whose trees this store published (or tried to).
  std::unordered_set<ObjectID> named_;
  std::unordered_set<ObjectID> published_;

  std::mutex mu_;
  std::condition_variable work_cv_;         // wakes workers (queue or stop)
  std::condition_variable lease_cv_;        // wakes the lease thread on stop
  bool stop_ = false;                       // guarded by mu_
  std::deque<Job> queue_;                   // guarded by mu_
  std::shared_ptr<DropBatch> drop_batch_;   // guarded by mu_: not yet taken
  Status last_transport_error_;             // guarded by mu_
  std::unique_ptr<etcd::EtcdWatch> watch_;  // guarded by mu_
  std::thread lease_thread_;                // guarded by mu_ until joined
  std::vector<std::thread> workers_;

  // Set by DoRegister before the lease thread starts, then the lease
  // thread's own.
  InstanceInfo self_;
  bool needs_lease_ = false;
  bool needs_put_ = false;
  std::chrono::steady_clock::time_point last_usage_put_;
  uint64_t published_used_ = 0;

  std::atomic<uint64_t> arena_used_{0};
  std::atomic<uint16_t> instance_id_{0};
  std::atomic<int64_t> lease_{0};
  std::atomic<bool> lease_alive_{false};
  std::atomic<uint64_t> lease_regrants_{0};
  std::atomic<uint64_t> keepalive_failures_{0};
  std::atomic<bool> watch_connected_{false};
  std::atomic<bool> watch_was_disconnected_{false};
  std::atomic<uint64_t> watch_resyncs_{0};
  std::atomic<bool> resync_pending_{false};  // a resync failed: retry
  std::atomic<uint64_t> watch_compactions_{0};
  std::atomic<uint64_t> usage_updates_{0};
};

// EtcdMetaStore::Make, as the MetaStore the daemon holds.
Result<std::unique_ptr<MetaStore>> MakeEtcdMetaStore(
    EtcdMetaStoreOptions options, EtcdMetaStore::Post post);

}  // namespace trellis::server
