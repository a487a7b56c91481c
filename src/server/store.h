// Store: the transport-independent core of trellisd. It owns the arena, the
// allocator, the object table and the metadata store, and executes decoded
// requests (docs/protocol.md) on behalf of connected clients.
//
// Not thread-safe: every call, and every callback it makes, happens on the
// daemon's event loop thread. Time is injected (RunAfter) so that tests can
// drive timeouts without a real loop.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>

#include "server/allocator.h"
#include "server/arena.h"
#include "server/meta_store.h"
#include "server/object_table.h"
#include "trellis/status.h"

namespace trellis::server {

struct StoreOptions {
  uint64_t size = 0;
  bool reserve = false;
  uint16_t instance_id = 1;
  // Largest payload a PutBlobs request may carry per blob.
  uint64_t max_inline_blob = 1u << 20;
};

class Store {
 public:
  using Done = std::function<void(Result<json>)>;
  using RunAfter =
      std::function<void(std::chrono::milliseconds, std::function<void()>)>;

  static Result<std::unique_ptr<Store>> Create(const StoreOptions& options,
                                               std::unique_ptr<MetaStore> meta,
                                               RunAfter run_after);

  const Arena& arena() const { return *arena_; }
  uint16_t instance_id() const { return table_.instance_id(); }

  // Registers a new client and returns its id.
  ClientId Connect();
  // Drops everything the client held or was writing, and its waiters.
  void Disconnect(ClientId client);
  // The body of the Hello reply for `client`.
  json HelloReply(ClientId client) const;

  // Executes one request of `type` (any request but Hello). Calls `done`
  // exactly once with the reply body or an error, possibly later (a GetName
  // that waits), except for Release, which has no reply and never calls it.
  // `done` is not called after Disconnect(client).
  void Handle(ClientId client, uint16_t type, const json& body, Done done);

 private:
  struct Waiter {
    uint64_t waiter_id;
    ClientId client;
    std::string name;
    Done done;
  };
  using WaiterList = std::list<Waiter>;

  Store(const StoreOptions& options, std::unique_ptr<Arena> arena,
        std::unique_ptr<MetaStore> meta, RunAfter run_after);

  Result<json> CreateBlobs(ClientId client, const json& body);
  Result<json> PutBlobs(ClientId client, const json& body);
  Result<json> CreateObject(ClientId client, const json& body);
  Result<json> GetMeta(ClientId client, const json& body);
  Result<json> GetBlobs(ClientId client, const json& body);
  Result<json> PutName(const json& body);
  void GetName(ClientId client, const json& body, Done done);
  Result<json> ListNames(const json& body);
  Result<json> Delete(const json& body);
  Result<json> Persist(const json& body);
  Result<json> ListObjects(const json& body);
  json StatusReply() const;
  Status BindName(const std::string& name, ObjectID id, bool overwrite);
  void OnNameBound(const std::string& name, ObjectID id);

  StoreOptions options_;
  std::unique_ptr<Arena> arena_;
  Allocator allocator_;
  ObjectTable table_;
  std::unique_ptr<MetaStore> meta_;
  RunAfter run_after_;
  ClientId next_client_ = 1;
  uint64_t next_waiter_ = 1;
  WaiterList waiters_;
};

}  // namespace trellis::server
