// EtcdClient: a synchronous etcd v3 client over etcd's JSON gateway.
//
// Why the JSON gateway over libcurl rather than gRPC: etcd (3.4 in Debian 12)
// serves its whole v3 API as JSON at http://HOST:PORT/v3/... (verified with
// etcd 3.4.23: /v3/kv/range, /v3/kv/put, /v3/kv/deleterange, /v3/kv/txn,
// /v3/kv/compaction, /v3/lease/grant, /v3/lease/keepalive, /v3/lease/revoke,
// /v3/watch; /v3beta/ is an alias there). gRPC C++ is packaged, but etcd's
// .proto files and their gogoproto / google.api imports are not, so gRPC would
// mean vendoring and generating code from protos we would have to copy by
// hand. libcurl is the best-kept HTTP client in Debian, handles HTTP/1.1
// chunked streaming (the watch is one long chunked response), timeouts,
// keep-alive connection reuse and TCP keep-alive; nlohmann-json (already a
// dependency) does the JSON. docs/cluster-testing.md says the same.
//
// Wire facts the code relies on: keys and values travel base64-encoded;
// int64 fields are JSON strings; a field equal to its default (0, false, "")
// is omitted from replies; errors are a non-200 status with
// {"error": ..., "code": <gRPC code>}.
//
// Blocking: every call except Watch() blocks the calling thread for at most
// EtcdOptions::timeout. Never call them from an event loop thread; run them
// on a worker.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "trellis/status.h"

namespace trellis::etcd {

struct EtcdOptions {
  // One or more "http://HOST:PORT" (a bare "HOST:PORT" gets http://). A call
  // goes to the endpoint that answered last and moves on to the next one only
  // when it cannot connect (a request that may have reached etcd is never
  // re-sent elsewhere: a Txn must not run twice).
  std::vector<std::string> endpoints;
  // Bound on each call, all endpoints together; also the connect bound of a
  // watch's (re)connection.
  std::chrono::milliseconds timeout = std::chrono::seconds(2);
  // Watch reconnection backoff: starts at the first, doubles up to the second.
  std::chrono::milliseconds watch_backoff_min = std::chrono::milliseconds(50);
  std::chrono::milliseconds watch_backoff_max = std::chrono::seconds(1);
};

// One key as etcd stores it. Revisions are etcd's store revisions.
struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;  // for a delete event: the delete's revision
  int64_t version = 0;
  int64_t lease = 0;  // 0: no lease
};

struct RangeResult {
  std::vector<KeyValue> kvs;  // in key order
  int64_t revision = 0;       // the store revision the range was read at
  bool more = false;          // true if `limit` cut the result short
};

struct CasResult {
  bool swapped = false;
  int64_t revision = 0;  // the store revision after the transaction
  // When !swapped: the key as it is now (nullopt if absent), to retry with.
  std::optional<KeyValue> current;
};

struct WatchEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  KeyValue kv;  // a delete carries only key and mod_revision
};

struct WatchState {
  enum class Kind {
    kConnected,     // the watch stream is established (again)
    kDisconnected,  // the stream broke or could not be made; retrying
    kCompacted,     // the revision to resume from was compacted away
  };
  Kind kind = Kind::kConnected;
  std::string endpoint;          // the endpoint concerned
  Status error;                  // kDisconnected: why
  int64_t compact_revision = 0;  // kCompacted: the oldest revision kept
};

// Events of one watch response, in revision order.
using WatchEventsCallback = std::function<void(const std::vector<WatchEvent>&)>;
using WatchStateCallback = std::function<void(const WatchState&)>;

class EtcdClient;

// A running watch of a key prefix: a background thread holding one streaming
// POST /v3/watch. It delivers every put and delete under the prefix in
// revision order, exactly once: when the stream breaks (etcd died, network
// gone) it reports kDisconnected once, reconnects with backoff (rotating
// through the endpoints) and resumes at the revision after the last one
// delivered, then reports kConnected. If that revision has been compacted it
// reports kCompacted and resumes at compact_revision: events in between are
// lost, so the owner must resync (GetPrefix at revision R) and ignore the
// events whose kv.mod_revision <= R that follow.
//
// Callbacks run on the watch thread, one at a time; they must not call Stop()
// or destroy the watch (that would wait for itself). They may call
// EtcdClient methods (blocking is fine there).
class EtcdWatch {
 public:
  ~EtcdWatch();  // Stop()
  EtcdWatch(const EtcdWatch&) = delete;
  EtcdWatch& operator=(const EtcdWatch&) = delete;

  // Ends the stream and joins the thread; prompt (it wakes the transfer, it
  // does not wait for a timeout) whether etcd is up or down. No callback runs
  // once it returns. Idempotent. Thread-safe, except from a callback.
  void Stop();

  // The revision the watch would resume from if it reconnected now.
  int64_t next_revision() const { return next_revision_.load(); }

 private:
  friend class EtcdClient;
  struct Impl;
  explicit EtcdWatch(std::unique_ptr<Impl> impl);
  void Run();

  std::unique_ptr<Impl> impl_;
  std::atomic<int64_t> next_revision_{0};
  std::thread thread_;
};

// A connection to an etcd cluster. Thread-safe: any number of threads may
// call it at once (each call uses its own pooled HTTP handle).
//
// Errors common to every call:
//   Disconnected "etcd unreachable (ENDPOINTS): <reason>" when no endpoint
//     accepts a connection, or "etcd ENDPOINT: <reason>" when the connection
//     broke during the call;
//   Timeout "etcd ENDPOINT: no reply within N ms";
//   IOError "etcd ENDPOINT: <etcd's message>" for an error reply (Invalid for
//     a rejected argument, ObjectNotFound for a missing lease).
class EtcdClient {
 public:
  // Validates the options (at least one endpoint). Does not contact etcd.
  static Result<std::unique_ptr<EtcdClient>> Make(EtcdOptions options);
  ~EtcdClient();

  const EtcdOptions& options() const { return options_; }

  // Sets key to value (attached to `lease` unless 0). Returns the store
  // revision of the write. ObjectNotFound if the lease does not exist.
  Result<int64_t> Put(const std::string& key, const std::string& value,
                      int64_t lease = 0);
  // The key, or nullopt if it does not exist.
  Result<std::optional<KeyValue>> Get(const std::string& key);
  // Keys starting with `prefix` (all keys for ""), at most `limit` (0: no
  // limit), in key order, with the revision they were read at.
  Result<RangeResult> GetPrefix(const std::string& prefix, int64_t limit = 0);
  // Removes the key; returns how many keys were removed (0 or 1).
  Result<int64_t> Delete(const std::string& key);
  // Removes every key starting with `prefix`; returns how many.
  Result<int64_t> DeletePrefix(const std::string& prefix);
  // Creates key = value (with `lease` unless 0) only if the key does not
  // exist, atomically (a Txn comparing create_revision with 0). Returns
  // whether this call created it: of racing callers exactly one gets true.
  Result<bool> PutIfAbsent(const std::string& key, const std::string& value,
                           int64_t lease = 0);
  // Sets key = value only if its mod_revision is `expected_mod_revision`
  // (0: only if the key does not exist), atomically. For counters and id
  // allocation: read with Get, compute, CompareAndSwap, retry with
  // `current` on !swapped.
  Result<CasResult> CompareAndSwap(const std::string& key,
                                   int64_t expected_mod_revision,
                                   const std::string& value, int64_t lease = 0);
  // Removes the key only if its mod_revision is `expected_mod_revision`,
  // atomically (a Txn). Returns whether this call removed it: false if the
  // key was changed, removed or re-created since it was read.
  Result<bool> DeleteIfUnchanged(const std::string& key,
                                 int64_t expected_mod_revision);
  // Discards history older than `revision` (watches and reads at older
  // revisions then fail as compacted). Invalid if already compacted past it
  // or `revision` is in the future.
  Status Compact(int64_t revision);

  // Grants a lease that expires `ttl_seconds` (>= 1) after its last
  // keep-alive; returns its id. Keys put with it are deleted when it expires.
  Result<int64_t> LeaseGrant(int64_t ttl_seconds);
  // Renews the lease once; returns its TTL in seconds. ObjectNotFound if the
  // lease expired or was revoked (its keys are gone then).
  Result<int64_t> LeaseKeepAliveOnce(int64_t lease);
  // Revokes the lease, deleting its keys. ObjectNotFound if it does not
  // exist.
  Status LeaseRevoke(int64_t lease);

  // Starts watching keys under `prefix` from `start_revision` (0: from the
  // next write on; a past revision replays history from there). Returns at
  // once, before the stream is connected: a caller that must not miss a
  // write uses a start revision it read (RangeResult::revision + 1). The
  // watch copies the options and does not refer to this client, which may be
  // destroyed first. Errors: Invalid for an empty callback.
  Result<std::unique_ptr<EtcdWatch>> Watch(const std::string& prefix,
                                           int64_t start_revision,
                                           WatchEventsCallback on_events,
                                           WatchStateCallback on_state);

 private:
  struct Pool;
  explicit EtcdClient(EtcdOptions options);

  EtcdOptions options_;
  std::unique_ptr<Pool> pool_;
};

// Helpers exposed for tests.
std::string Base64Encode(const std::string& bytes);
// Invalid on a malformed input.
Result<std::string> Base64Decode(const std::string& text);
// The range_end that selects every key starting with `prefix` ("\0" for "").
std::string PrefixRangeEnd(const std::string& prefix);

}  // namespace trellis::etcd
