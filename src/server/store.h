// Store: the transport-independent core of trellisd. It executes decoded
// requests (docs/protocol.md) on behalf of clients.
//
// Structure:
// * Store (store.cc: dispatch and the object/blob requests; store_names.cc:
//   the requests that touch names and published trees) owns the arena, the
//   allocator, the object table (object_table.h: the lifecycle state
//   machine), the memory manager and the metadata store. Handle looks the
//   request type up in a table of handlers, one small member function per
//   request type: synchronous ones return Result<json>, asynchronous ones
//   (waiting for memory, a reload or the MetaStore) take the reply callback.
//   Bodies are parsed with the accessors of common/protocol.h and
//   request_body.h.
// * MemoryManager (memory_manager.h) decides spills and reloads and makes
//   requests that need memory wait for them; the copies run on workers.
// * MetaStore (meta_store.h) holds names and published trees; its calls
//   complete through callbacks, possibly later (a remote backend), so the
//   name requests are asynchronous. NameWaiters and NameLocks (names.h) are
//   their helpers.
// * Time, background work and spill storage are injected (StoreHooks,
//   SpillStorage), so the store is unit-tested with fakes
//   (src/testing/: fake clock, manual executor, fake spill storage, a
//   MetaStore that completes later) and the loop never blocks on disk I/O.
//
// Not thread-safe: every call, and every callback it makes, happens on the
// daemon's event loop thread.
//
// Memory pressure: a request that needs arena memory (CreateBlobs, PutBlobs,
// a reload) and does not fit waits while least recently used unheld blobs
// are spilled, then is retried; when nothing more can be spilled it fails at
// once with OutOfMemory saying what was asked, what is free and what readers
// hold. Above the high watermark, blobs are spilled in the background down to
// the low watermark (MemoryManager has the details).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "server/allocator.h"
#include "server/arena.h"
#include "server/clock.h"
#include "server/fetcher.h"
#include "server/memory_manager.h"
#include "server/meta_store.h"
#include "server/names.h"
#include "server/object_table.h"
#include "server/request_metrics.h"
#include "server/spill_storage.h"
#include "trellis/status.h"

namespace trellis::server {

struct StoreOptions {
  uint64_t size = 0;
  bool reserve = false;
  // Ask for transparent huge pages for the arena (Arena::Create); they are
  // used only where the kernel's shmem THP policy honours the request.
  bool huge_pages = true;
  // This daemon's id, as assigned by MetaStore::Register.
  uint16_t instance_id = 1;
  // Largest payload a PutBlobs request may carry per blob.
  uint64_t max_inline_blob = 1u << 20;
  // Watermarks, as fractions of `size` (used only with spill storage).
  double spill_high = 0.9;
  double spill_low = 0.7;
};

struct StoreHooks {
  // Time and timers (GetName timeouts). Not owned; must outlive the store.
  Clock* clock = nullptr;
  // Runs spill and reload copies and spill file deletes off the loop.
  RunInBackground run_in_background;
  // Copies objects from other instances (GetMeta {fetch: true}). Not owned;
  // must outlive the store. Null: this daemon does not fetch.
  PeerFetcher* fetcher = nullptr;
};

// True if `tree` (being built, or published) is a global object's: its
// root has "global": true (docs/format.md, "Global objects").
bool IsGlobalTree(const json& tree);

class Store {
 public:
  using Done = std::function<void(Result<json>)>;
  // Largest spare blob a CreateObject may ask for (docs/protocol.md,
  // "Spare blobs").
  static constexpr uint64_t kMaxSpareBlob = 2u << 20;

  // `spill` may be null (no spilling); `spill_error` then says why, if a
  // spill directory was asked for but unusable. Invalid for watermarks that
  // are out of order or missing hooks; the arena's errors.
  static Result<std::unique_ptr<Store>> Create(
      const StoreOptions& options, std::unique_ptr<MetaStore> meta,
      std::unique_ptr<SpillStorage> spill, std::string spill_error,
      StoreHooks hooks);
  ~Store();

  const Arena& arena() const { return *arena_; }
  // What requests cost so far (see RequestMetrics); read on the loop.
  const RequestMetrics& request_metrics() const { return request_metrics_; }
  // Bytes of the arena allocated to blobs now.
  uint64_t arena_used() const { return allocator_.used(); }
  uint16_t instance_id() const { return table_.instance_id(); }

  // Registers a new client and returns its id (never reused). The requests
  // of a client connected with `counted` false (the metrics server's own)
  // are left out of request_metrics().
  //
  // `take_input`, if set, handles at once the requests the client has sent
  // that its transport has not read yet (Session::TakeInput), without
  // blocking. The store calls it when another client's request names the
  // id reserved for this one (ObjectTable::ReserveId) that is not created
  // yet: the CreateObject making it may be in this client's socket, sent
  // before the id could be passed on. With it, a put that does not wait
  // for its reply is seen by every later request naming its id.
  ClientId Connect(bool counted = true,
                   std::function<void()> take_input = nullptr);
  // Drops everything the client held or was writing, and its waiters.
  // Requests of the client still in flight finish without replying.
  void Disconnect(ClientId client);
  // The body of the Hello reply for `client`.
  json HelloReply(ClientId client) const;

  // Executes one request of `type` (any request but Hello). Calls `done`
  // exactly once with the reply body or an error, possibly later (a GetName
  // that waits, a request waiting for memory, a reload or the MetaStore),
  // except for Release, which has no reply and never calls it. `done` is not
  // called after Disconnect(client). The request owns `body`; handlers may
  // take parts of it (CreateObject moves its tree and data out).
  void Handle(ClientId client, uint16_t type, json body, Done done);

  // Where bytes [offset, offset + size) of a CREATED blob of `client` are
  // in the arena, for a transport that writes them there (WriteBlob bulk
  // frames). Valid until the blob is sealed or aborted or the client
  // disconnects. ObjectNotFound if `id` is no blob; Invalid if it is not
  // being written by this client (sealed, or another client's) or the range
  // is not within its size.
  Result<uint8_t*> WritableRange(ClientId client, ObjectID id, uint64_t offset,
                                 uint64_t size);

 private:
  // A request handler. It returns an error to reply with at once, leaving
  // `done` untouched; or OK, having taken `done` (moved from it) to call
  // exactly once, now or later.
  using Handler = Status (Store::*)(ClientId, json&, Done&);
  using SyncHandler = Result<json> (Store::*)(ClientId, const json&);
  using IdsHandler = void (Store::*)(ClientId, std::vector<ObjectID>, Done);
  static constexpr size_t kHandlerSlots = 32;  // > the largest request type
  using HandlerTable = std::array<Handler, kHandlerSlots>;
  static const HandlerTable& Handlers();
  // Before a request of `client` naming ids ("ids" or "id" in `body`) is
  // handled: for each that is another client's reserved id, not created
  // yet, lets that client's unread requests in first (Connect's
  // take_input).
  void TakeInputCreating(ClientId client, const json& body);
  // Adapters to Handler: a synchronous handler, and one that takes the
  // body's "ids".
  template <SyncHandler F>
  Status Sync(ClientId client, json& body, Done& done);
  template <IdsHandler F>
  Status WithIds(ClientId client, json& body, Done& done);

  Store(const StoreOptions& options, std::unique_ptr<Arena> arena,
        std::unique_ptr<MetaStore> meta, std::unique_ptr<SpillStorage> spill,
        std::string spill_error, StoreHooks hooks);

  // `done`, called only while `client` is connected.
  Done ForClient(ClientId client, Done done) const;

  // --- the requests (store.cc) ---
  Status CreateBlobs(ClientId client, json& body, Done& done);
  Status PutBlobs(ClientId client, json& body, Done& done);
  // Allocates blobs of `sizes` once memory allows; with `payload` (one binary
  // per size) fills and seals them.
  void AllocateBlobs(ClientId client, std::vector<uint64_t> sizes,
                     std::shared_ptr<const json> payload, Done done);
  Result<json> Seal(ClientId client, const json& body);
  Result<json> Abort(ClientId client, const json& body);
  Status GetMeta(ClientId client, json& body, Done& done);
  // With `relocate`, blob offsets are positions in the layout of the held
  // blobs read back to back (ObjectTable::GetTreeRelocated).
  template <typename Serve>
  void ServeResident(ClientId client, std::vector<ObjectID> ids, Done done,
                     Serve serve);
  // Replies with the trees of objects that are here.
  void ServeTrees(ClientId client, std::vector<ObjectID> ids, bool relocate,
                  Done done);
  void GetBlobs(ClientId client, std::vector<ObjectID> ids, Done done);
  Status Release(ClientId client, json& body, Done& done);
  Result<json> ListObjects(ClientId client, const json& body);
  Result<json> StatusReply(ClientId client, const json& body);
  void Pin(ClientId client, std::vector<ObjectID> ids, Done done);
  Result<json> Unpin(ClientId client, const json& body);
  void Evict(ClientId client, std::vector<ObjectID> ids, Done done);
  Result<json> MemoryTrim(ClientId client, const json& body);

  // --- objects of other instances (store_fetch.cc) ---
  // ServeTrees, once the objects that are not here but were made elsewhere
  // are here (fetched, with `fetch`), or the error saying where they are.
  void GetTrees(ClientId client, std::vector<ObjectID> ids, bool relocate,
                bool fetch, Done done);
  // The cluster's member list as GetTrees looked it up (null when every id
  // was made here, so it was not needed).
  using MemberList = std::shared_ptr<const Result<std::vector<InstanceInfo>>>;
  // GetTrees of ids none of which is a global object; `members` is non-null
  // if some id was made elsewhere.
  void GetLocalOrRemoteTrees(ClientId client, std::vector<ObjectID> ids,
                             bool relocate, bool fetch, MemberList members,
                             Done done);
  // Finds the instances that made `ids` in `members` (non-null) and fetches
  // the objects from them (`fetch`), or fails naming where they live or
  // that their instance is gone.
  void BringHere(std::vector<ObjectID> ids, bool fetch, MemberList members,
                 std::function<void(Status)> done);
  // Fetches `id` from the daemon at `endpoint`, or joins its fetch in
  // flight.
  void FetchObject(ObjectID id, const std::string& endpoint,
                   std::function<void(Status)> done);
  // The fetcher's plan step: allocates the blobs of `tree` that are not
  // here (waiting for memory as a put does).
  void PlanCopies(ObjectID id, const json& tree, PeerFetcher::PlanReply reply);
  // Makes the replica from the copied blobs, or drops them; answers the
  // fetch's waiters.
  void FinishFetch(ObjectID id, Result<json> tree);

  // --- the requests that touch names or published trees (store_names.cc) ---
  // One CreateObject in flight, run as a chain of steps, each possibly
  // completing later: lock the name (if any), check it is free
  // (overwrite=false), build the object, publish it (persist), bind the
  // name, reply, unlock.
  struct CreateCall {
    ClientId client;
    // The tree, moved out of the request's body; null once built.
    json tree;
    std::string name;  // empty: no name (and no lock)
    bool overwrite;
    bool persist;
    ObjectID id;  // once built
    Done done;    // ForClient
    // CreateObject with `data`: its bytes (moved out of the body) until the
    // blob holding them is made, and that blob, which {"id": 0} nodes name.
    std::vector<uint8_t> data;
    bool has_data = false;
    ObjectID inline_blob;
    // Bytes of the spare blob asked for with the reply (0: none).
    uint64_t spare = 0;
    // The id reserved for this client that the root is to get (`id` in
    // the body), or none.
    ObjectID as = ObjectID();
  };
  Status CreateObject(ClientId client, json& body, Done& done);
  void CheckNameFree(std::shared_ptr<CreateCall> call);
  void BuildObject(std::shared_ptr<CreateCall> call);
  // Makes the blob of call->data, then builds the tree naming it.
  void AllocateInlineBlob(std::shared_ptr<CreateCall> call);
  void BuildTree(std::shared_ptr<CreateCall> call);
  void BindCreated(std::shared_ptr<CreateCall> call);
  void FinishCreate(std::shared_ptr<CreateCall> call, Status status);
  // Adds {"spare": {"id", "offset", "object"}} to `reply`: a new unsealed
  // blob of
  // `size` bytes for `client`'s next put, if memory is plentiful (no
  // request waits for it, and the arena stays under 3/4 full).
  void GrantSpare(ClientId client, uint64_t size, json* reply);
  // The objects bound to `names`, or the error of the first unbound one.
  void ResolveNames(std::vector<std::string> names,
                    MetaStore::Callback<std::vector<ObjectID>> done);
  Status PutName(ClientId client, json& body, Done& done);
  // The rest of a PutName holding the name's lock: replies `nameable` if it
  // is an error, else binds the name; releases the lock either way.
  void BindLockedName(ClientId client, const std::string& name, ObjectID id,
                      bool overwrite, Status nameable, Done done);
  // Whether `id` may be named: ObjectNotFound or NotSealed if not.
  Status CheckNameable(ObjectID id) const;
  Status GetName(ClientId client, json& body, Done& done);
  Status DropName(ClientId client, json& body, Done& done);
  Status ListNames(ClientId client, json& body, Done& done);
  // The cluster's name, backend and registered instances.
  Status ClusterInfo(ClientId client, json& body, Done& done);
  // Where objects live and how big they are (docs/protocol.md, "Locate"),
  // for placement: holds nothing, fetches nothing (store_fetch.cc).
  Status Locate(ClientId client, json& body, Done& done);
  void LocateIds(ClientId client, std::vector<ObjectID> ids, Done done);
  // The Locate entry of `id` from the table (nullptr: not here).
  std::optional<json> LocateHere(ObjectID id) const;
  Status Delete(ClientId client, json& body, Done& done);
  Status Persist(ClientId client, json& body, Done& done);

  // --- global objects (store_global.cc) ---
  using GlobalTrees = std::unordered_map<ObjectID, json>;
  struct GlobalBuild;
  // CreateObject of a tree marked global: Invalid at once for a malformed
  // tree; else completes the call later.
  Status BuildGlobal(std::shared_ptr<CreateCall> call);
  // Fills build->stubs[i] from member i's tree (persisting a local member).
  void StubMember(std::shared_ptr<GlobalBuild> build, size_t i,
                  std::function<void(Status)> done);
  void PublishGlobal(std::shared_ptr<GlobalBuild> build);
  // The published trees of those of `ids` that are global objects (none:
  // an empty map); the MetaStore's error if it cannot be asked.
  void LookUpGlobals(const std::vector<ObjectID>& ids,
                     std::function<void(Result<GlobalTrees>)> done);
  // GetTrees where some of `ids` are the global objects `globals`.
  void ServeWithGlobals(ClientId client, std::vector<ObjectID> ids,
                        GlobalTrees globals, bool relocate, bool fetch,
                        MemberList members, Done done);
  // PutName of an id not in the table (the name is locked; released here).
  void PutNameOfGlobal(ClientId client, std::string name, ObjectID id,
                       bool overwrite, Done done);
  // Deletes `here` from the table (all or nothing: on error nothing is
  // deleted), then drops the names and published trees of those and of the
  // global objects `globals`.
  void DeleteObjects(std::vector<ObjectID> here, std::vector<ObjectID> globals,
                     bool deep, bool force, Done done);

  StoreOptions options_;
  std::unique_ptr<Arena> arena_;
  Allocator allocator_;
  ObjectTable table_;
  MemoryManager memory_;
  ClientId next_client_ = 1;
  RequestMetrics request_metrics_;
  std::unordered_set<ClientId> uncounted_clients_;
  // Connect's take_input, by client.
  std::unordered_map<ClientId, std::function<void()>> input_takers_;
  uint64_t trimmed_bytes_ = 0;
  NameWaiters waiters_;
  NameLocks name_locks_;
  PeerFetcher* fetcher_;
  // Fetches in flight, by root id.
  struct Fetching {
    ClientId client = 0;  // the table client owning the replica's blobs
    std::string endpoint;
    std::vector<std::function<void(Status)>> waiters;
    uint64_t bytes = 0;  // to copy
    std::chrono::steady_clock::time_point started;
  };
  std::unordered_map<ObjectID, Fetching> fetching_;
  struct FetchCounters {
    uint64_t fetches = 0, bytes = 0, failures = 0, joined = 0;
  } fetch_counters_;
  // Last: destroyed first, dropping completions that refer to the above.
  std::unique_ptr<MetaStore> meta_;
};

}  // namespace trellis::server
