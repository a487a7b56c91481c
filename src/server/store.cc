// The Store's construction, dispatch and the requests on objects and blobs
// that do not touch names (those are in store_names.cc).
#include "server/store.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstring>

#include "common/protocol.h"
#include "common/status_fields.h"
#include "server/request_body.h"
#include "trellis/object.h"

namespace trellis::server {

using protocol::GetBool;
using protocol::GetIds;
using protocol::GetUints;
using protocol::MessageType;

Result<std::unique_ptr<Store>> Store::Create(
    const StoreOptions& options, std::unique_ptr<MetaStore> meta,
    std::unique_ptr<SpillStorage> spill, std::string spill_error,
    StoreHooks hooks) {
  if (!(options.spill_low >= 0 && options.spill_low <= options.spill_high &&
        options.spill_high <= 1)) {
    return Status::Invalid(
        "spill watermarks must satisfy 0 <= low <= high <= 1");
  }
  if (!meta || !hooks.clock || !hooks.run_in_background) {
    return Status::Invalid(
        "a store needs a metadata store, a clock and a worker pool");
  }
  TRELLIS_ASSIGN_OR_RAISE(
      auto arena,
      Arena::Create(options.size, options.reserve, options.huge_pages));
  return std::unique_ptr<Store>(
      new Store(options, std::move(arena), std::move(meta), std::move(spill),
                std::move(spill_error), std::move(hooks)));
}

Store::Store(const StoreOptions& options, std::unique_ptr<Arena> arena,
             std::unique_ptr<MetaStore> meta,
             std::unique_ptr<SpillStorage> spill, std::string spill_error,
             StoreHooks hooks)
    : options_(options),
      arena_(std::move(arena)),
      allocator_(arena_->size()),
      table_(&allocator_, options.instance_id),
      memory_({options.spill_high, options.spill_low}, arena_.get(),
              &allocator_, &table_, std::move(spill), std::move(spill_error),
              std::move(hooks.run_in_background)),
      waiters_(hooks.clock),
      fetcher_(hooks.fetcher),
      meta_(std::move(meta)) {
  meta_->SetNameListener([this](const std::string& name, ObjectID id) {
    waiters_.Bound(name, id);
  });
}

// Spill files die with the daemon (SpillStorage's destructor removes them).
// The owner joins the spill workers before destroying the store.
Store::~Store() = default;

ClientId Store::Connect(bool counted, std::function<void()> take_input) {
  ClientId client = next_client_++;
  table_.AddClient(client);
  if (!counted) uncounted_clients_.insert(client);
  if (take_input) input_takers_.emplace(client, std::move(take_input));
  return client;
}

void Store::Disconnect(ClientId client) {
  input_takers_.erase(client);
  waiters_.DropClient(client);
  table_.RemoveClient(client);
  uncounted_clients_.erase(client);
}

json Store::HelloReply(ClientId client) const {
  return {{"version", protocol::kProtocolVersion},
          {"client_id", client},
          {"instance_id", table_.instance_id()},
          {"arena_size", arena_->size()},
          {"reserved", arena_->reserved()},
          {"huge_pages", arena_->huge_pages()},
          {"max_inline_blob", options_.max_inline_blob}};
}

// ------------------------------------------------------------------ dispatch

template <Store::SyncHandler F>
Status Store::Sync(ClientId client, json& body, Done& done) {
  done((this->*F)(client, body));
  return Status::OK();
}

template <Store::IdsHandler F>
Status Store::WithIds(ClientId client, json& body, Done& done) {
  TRELLIS_ASSIGN_OR_RAISE(std::vector<ObjectID> ids, GetIds(body, "ids"));
  (this->*F)(client, std::move(ids), std::move(done));
  return Status::OK();
}

const Store::HandlerTable& Store::Handlers() {
  static const HandlerTable table = [] {
    HandlerTable t{};
    auto on = [&t](MessageType type, Handler handler) {
      auto slot = static_cast<size_t>(type);
      assert(slot < t.size() && !t[slot]);
      t[slot] = handler;
    };
    on(MessageType::kCreateBlobs, &Store::CreateBlobs);
    on(MessageType::kPutBlobs, &Store::PutBlobs);
    on(MessageType::kSeal, &Store::Sync<&Store::Seal>);
    on(MessageType::kAbort, &Store::Sync<&Store::Abort>);
    on(MessageType::kCreateObject, &Store::CreateObject);
    on(MessageType::kGetMeta, &Store::GetMeta);
    on(MessageType::kGetBlobs, &Store::WithIds<&Store::GetBlobs>);
    on(MessageType::kRelease, &Store::Release);
    on(MessageType::kPutName, &Store::PutName);
    on(MessageType::kGetName, &Store::GetName);
    on(MessageType::kDropName, &Store::DropName);
    on(MessageType::kListNames, &Store::ListNames);
    on(MessageType::kDelete, &Store::Delete);
    on(MessageType::kPersist, &Store::Persist);
    on(MessageType::kListObjects, &Store::Sync<&Store::ListObjects>);
    on(MessageType::kStatus, &Store::Sync<&Store::StatusReply>);
    on(MessageType::kPin, &Store::WithIds<&Store::Pin>);
    on(MessageType::kUnpin, &Store::Sync<&Store::Unpin>);
    on(MessageType::kEvict, &Store::WithIds<&Store::Evict>);
    on(MessageType::kMemoryTrim, &Store::Sync<&Store::MemoryTrim>);
    on(MessageType::kClusterInfo, &Store::ClusterInfo);
    on(MessageType::kLocate, &Store::Locate);
    return t;
  }();
  return table;
}

void Store::Handle(ClientId client, uint16_t type, json body, Done done) {
  if (!uncounted_clients_.empty() && uncounted_clients_.count(client)) {
    // not counted
  } else if (type == static_cast<uint16_t>(MessageType::kRelease) || !done) {
    request_metrics_.Record(type, 0, StatusCode::kOk);  // no reply to time
  } else {
    done = [this, type, start = std::chrono::steady_clock::now(),
            done = std::move(done)](Result<json> reply) {
      std::chrono::duration<double> took =
          std::chrono::steady_clock::now() - start;
      request_metrics_.Record(
          type, took.count(),
          reply.ok() ? StatusCode::kOk : reply.status().code());
      done(std::move(reply));
    };
  }
  if (table_.has_reservations() &&
      type != static_cast<uint16_t>(MessageType::kCreateObject) &&
      type != static_cast<uint16_t>(MessageType::kRelease)) {
    TakeInputCreating(client, body);
  }
  const HandlerTable& handlers = Handlers();
  Handler handler = type < handlers.size() ? handlers[type] : nullptr;
  Status st = handler ? (this->*handler)(client, body, done)
                      : Status::Invalid("unexpected message type " +
                                        protocol::MessageTypeName(type));
  if (!st.ok()) done(std::move(st));
}

void Store::TakeInputCreating(ClientId client, const json& body) {
  auto take = [&](const json& id) {
    if (!id.is_number_unsigned()) return;  // the handler says what is wrong
    ObjectID oid(id.get<uint64_t>());
    ClientId holder = table_.ReservedBy(oid);
    if (holder == 0 || holder == client || table_.Find(oid)) return;
    auto taker = input_takers_.find(holder);
    // A copy: the requests it handles may disconnect the holder.
    if (taker != input_takers_.end()) std::function<void()>(taker->second)();
  };
  if (!body.is_object()) return;
  auto ids = body.find("ids");
  if (ids != body.end() && ids->is_array()) {
    for (const json& id : *ids) take(id);
  }
  auto id = body.find("id");
  if (id != body.end()) take(*id);
}

Store::Done Store::ForClient(ClientId client, Done done) const {
  return [this, client, done = std::move(done)](Result<json> reply) {
    if (table_.HasClient(client)) done(std::move(reply));
  };
}

// --------------------------------------------------------------------- blobs

namespace {
json SlotsReply(const std::vector<BlobSlot>& slots) {
  json ids = json::array(), offsets = json::array();
  for (const BlobSlot& s : slots) {
    ids.push_back(s.id.value());
    offsets.push_back(s.offset);
  }
  return json{{"ids", std::move(ids)}, {"offsets", std::move(offsets)}};
}
}  // namespace

Status Store::CreateBlobs(ClientId client, json& body, Done& done) {
  TRELLIS_ASSIGN_OR_RAISE(std::vector<uint64_t> sizes, GetUints(body, "sizes"));
  AllocateBlobs(client, std::move(sizes), nullptr, std::move(done));
  return Status::OK();
}

Status Store::PutBlobs(ClientId client, json& body, Done& done) {
  TRELLIS_ASSIGN_OR_RAISE(
      std::vector<uint64_t> sizes,
      InlineBlobSizes(body, "data", options_.max_inline_blob));
  AllocateBlobs(client, std::move(sizes),
                std::make_shared<const json>(*body.find("data")),
                std::move(done));
  return Status::OK();
}

void Store::AllocateBlobs(ClientId client, std::vector<uint64_t> sizes,
                          std::shared_ptr<const json> payload, Done done) {
  MemoryNeed need = MemoryNeed::Of(sizes);
  if (need.total > allocator_.capacity()) {
    return done(memory_.OutOfMemory(need.total,
                                    "the request is larger than the arena"));
  }
  auto shared_done = std::make_shared<Done>(ForClient(client, std::move(done)));
  memory_.WithMemory(
      need,
      [this, client, sizes = std::move(sizes), payload, shared_done] {
        if (!table_.HasClient(client)) return true;  // gone meanwhile
        auto slots = table_.CreateBlobs(client, sizes);
        if (!slots.ok()) {
          if (slots.status().IsOutOfMemory()) return false;
          (*shared_done)(slots.status());
          return true;
        }
        if (payload) {
          std::vector<ObjectID> ids;
          for (const BlobSlot& slot : *slots) ids.push_back(slot.id);
          for (size_t i = 0; i < slots->size(); ++i) {
            const auto& bytes = (*payload)[i].get_binary();
            Status written =
                arena_->Write((*slots)[i].offset, bytes.data(), bytes.size());
            if (!written.ok()) {
              (void)table_.Abort(client, ids);  // none was handed out
              (*shared_done)(written);
              return true;
            }
          }
          Status sealed = table_.Seal(client, ids);
          if (!sealed.ok()) {
            (*shared_done)(sealed);
            return true;
          }
        }
        (*shared_done)(SlotsReply(*slots));
        return true;
      },
      [shared_done](Status st) { (*shared_done)(st); });
}

Result<json> Store::Seal(ClientId client, const json& body) {
  TRELLIS_ASSIGN_OR_RAISE(std::vector<ObjectID> ids, GetIds(body, "ids"));
  return EmptyReply(table_.Seal(client, ids));
}

Result<json> Store::Abort(ClientId client, const json& body) {
  TRELLIS_ASSIGN_OR_RAISE(std::vector<ObjectID> ids, GetIds(body, "ids"));
  return EmptyReply(table_.Abort(client, ids));
}

Status Store::Release(ClientId client, json& body, Done& done) {
  // No reply (`done` is dropped): a bad release is the client's bug and
  // affects only its own holds, which are dropped anyway when it disconnects.
  auto ids = GetIds(body, "ids");
  if (ids.ok()) (void)table_.Release(client, *ids);
  return Status::OK();
}

Status Store::GetMeta(ClientId client, json& body, Done& done) {
  // relocate: offsets for a remote reader of ReadBlobs(held) (protocol.md).
  TRELLIS_ASSIGN_OR_RAISE(bool relocate, GetBool(body, "relocate", false));
  // fetch: copy objects made elsewhere in the cluster here first.
  TRELLIS_ASSIGN_OR_RAISE(bool fetch, GetBool(body, "fetch", false));
  if (!body.contains("names")) {
    TRELLIS_ASSIGN_OR_RAISE(std::vector<ObjectID> ids, GetIds(body, "ids"));
    GetTrees(client, std::move(ids), relocate, fetch, std::move(done));
    return Status::OK();
  }
  if (body.contains("ids")) {
    return Status::Invalid("GetMeta takes 'ids' or 'names', not both");
  }
  TRELLIS_ASSIGN_OR_RAISE(std::vector<std::string> names,
                          GetStrings(body, "names"));
  ResolveNames(std::move(names), [this, client, relocate, fetch,
                                  done = ForClient(client, std::move(done))](
                                     Result<std::vector<ObjectID>> ids) {
    if (!ids.ok()) return done(ids.status());
    GetTrees(client, std::move(*ids), relocate, fetch, done);
  });
  return Status::OK();
}

// Calls `serve(ids)` once every blob reachable from `ids` is in memory (they
// stay in memory while it runs) and replies with its result; replies with
// the reload's error instead, and with nothing if the client disconnected
// meanwhile. `serve` must hold all or nothing.
template <typename Serve>
void Store::ServeResident(ClientId client, std::vector<ObjectID> ids, Done done,
                          Serve serve) {
  std::vector<ObjectID> wanted = ids;
  memory_.EnsureResident(
      wanted, [this, client, ids = std::move(ids), done = std::move(done),
               serve = std::move(serve)](Status st) {
        if (!table_.HasClient(client)) return;
        if (!st.ok()) return done(st);
        done(serve(ids));
      });
}

void Store::ServeTrees(ClientId client, std::vector<ObjectID> ids,
                       bool relocate, Done done) {
  ServeResident(
      client, std::move(ids), std::move(done),
      [this, client,
       relocate](const std::vector<ObjectID>& ids) -> Result<json> {
        // {trees: [...], held: [...]} written straight as MessagePack: each
        // object's tree comes encoded from the table's cache.
        std::vector<uint8_t> body;
        std::vector<ObjectID> held;
        protocol::AppendMsgpackMapHeader(2, &body);
        protocol::AppendMsgpackString("trees", &body);
        protocol::AppendMsgpackArrayHeader(ids.size(), &body);
        uint64_t end = 0;  // of the relocated layout
        for (ObjectID id : ids) {
          Status got =
              relocate ? table_.GetTreeRelocated(client, id, &body, &held, &end)
                       : table_.GetTreeEncoded(client, id, &body, &held);
          if (!got.ok()) {
            (void)table_.Release(client, held);  // all or nothing
            return got;
          }
        }
        protocol::AppendMsgpackString("held", &body);
        protocol::AppendMsgpackArrayHeader(held.size(), &body);
        for (ObjectID h : held) protocol::AppendMsgpackUint(h.value(), &body);
        return protocol::EncodedBody(std::move(body));
      });
}

void Store::GetBlobs(ClientId client, std::vector<ObjectID> ids, Done done) {
  for (ObjectID id : ids) {  // a clear error before any reload starts
    const ObjectEntry* e = table_.Find(id);
    if (e && !e->is_blob) {
      return done(Status::Invalid(id.ToString() + " is a " + e->type_name +
                                  ", not a blob"));
    }
  }
  ServeResident(
      client, std::move(ids), std::move(done),
      [this, client](const std::vector<ObjectID>& ids) -> Result<json> {
        std::vector<ObjectID> held;
        std::vector<BlobSlot> slots;
        slots.reserve(ids.size());
        for (ObjectID id : ids) {
          auto slot = table_.GetBlob(client, id);
          if (!slot.ok()) {
            (void)table_.Release(client, held);  // all or nothing
            return slot.status();
          }
          held.push_back(id);
          slots.push_back(*slot);
        }
        // {offsets: [...], sizes: [...]} written straight as MessagePack.
        std::vector<uint8_t> reply;
        reply.reserve(32 + 18 * slots.size());
        protocol::AppendMsgpackMapHeader(2, &reply);
        protocol::AppendMsgpackString("offsets", &reply);
        protocol::AppendMsgpackArrayHeader(slots.size(), &reply);
        for (const BlobSlot& s : slots)
          protocol::AppendMsgpackUint(s.offset, &reply);
        protocol::AppendMsgpackString("sizes", &reply);
        protocol::AppendMsgpackArrayHeader(slots.size(), &reply);
        for (const BlobSlot& s : slots)
          protocol::AppendMsgpackUint(s.size, &reply);
        return protocol::EncodedBody(std::move(reply));
      });
}

Result<json> Store::ListObjects(ClientId, const json& body) {
  TRELLIS_ASSIGN_OR_RAISE(ListRequest list, ParseList(body));
  json objects = json::array();
  for (json& item : table_.List(list.pattern, list.limit)) {
    objects.push_back(std::move(item));
  }
  return json{{"objects", std::move(objects)}};
}

Result<json> Store::StatusReply(ClientId, const json&) {
  TableStats stats = table_.Stats();
  // Every field of TRELLIS_STORE_STATUS_FIELDS, in its order (one left out
  // does not compile).
  const MemoryCounters& counters = memory_.counters();
  return protocol::StatusBody({
      .instance_id = table_.instance_id(),
      .backend = meta_->backend(),
      .cluster = meta_->cluster_name(),
      .arena_size = arena_->size(),
      .reserved = arena_->reserved(),
      .huge_pages = arena_->huge_pages(),
      .used = allocator_.used(),
      .free = allocator_.free_bytes(),
      .held_bytes = stats.held_bytes,
      .pinned_bytes = stats.pinned_bytes,
      .objects = stats.objects,
      .blobs = stats.blobs,
      .unsealed_blobs = stats.unsealed_blobs,
      .deleted_pending = stats.deleted_pending,
      .clients = table_.client_count(),
      .spill_enabled = memory_.spill_enabled(),
      .spill_dir = memory_.spill_location(),
      .spill_error = memory_.spill_error(),
      .spill_high = memory_.options().spill_high,
      .spill_low = memory_.options().spill_low,
      .spilled_blobs = stats.spilled_blobs,
      .spilled_bytes = stats.spilled_bytes,
      .spill_count = counters.spills,
      .spill_bytes_total = counters.spilled_bytes,
      .spill_failures = counters.spill_failures,
      .reload_count = counters.reloads,
      .reload_bytes_total = counters.reloaded_bytes,
      .reload_failures = counters.reload_failures,
      .out_of_memory_count = counters.out_of_memory,
      .arena_resident_bytes = arena_->ResidentBytes(),
      .trimmed_bytes_total = trimmed_bytes_,
      .fetch_count = fetch_counters_.fetches,
      .fetch_bytes_total = fetch_counters_.bytes,
      .fetch_failures = fetch_counters_.failures,
      .fetch_joined = fetch_counters_.joined,
  });
}

// ------------------------------------------------------------ memory pressure

void Store::Pin(ClientId client, std::vector<ObjectID> ids, Done done) {
  // Pin first (nothing spills the blobs from now on), then bring back those
  // already on disk.
  Status st = table_.SetPinned(ids, true);
  if (!st.ok()) return done(st);
  memory_.EnsureResident(ids, [done = ForClient(client, std::move(done))](
                                  Status st) { done(EmptyReply(st)); });
}

Result<json> Store::Unpin(ClientId, const json& body) {
  TRELLIS_ASSIGN_OR_RAISE(std::vector<ObjectID> ids, GetIds(body, "ids"));
  return EmptyReply(table_.SetPinned(ids, false));
}

void Store::Evict(ClientId client, std::vector<ObjectID> ids, Done done) {
  memory_.Evict(
      ids, [done = ForClient(client, std::move(done))](Result<uint64_t> bytes) {
        if (!bytes.ok()) return done(bytes.status());
        done(json{{"evicted_bytes", *bytes}});
      });
}

Result<json> Store::MemoryTrim(ClientId, const json&) {
  uint64_t before = arena_->ResidentBytes();
  for (const auto& [offset, length] : allocator_.FreeRanges()) {
    TRELLIS_RETURN_NOT_OK(arena_->Discard(offset, length));
  }
  uint64_t after = arena_->ResidentBytes();
  uint64_t trimmed = before > after ? before - after : 0;
  trimmed_bytes_ += trimmed;
  return json{{"trimmed_bytes", trimmed}, {"resident_bytes", after}};
}

Result<uint8_t*> Store::WritableRange(ClientId client, ObjectID id,
                                      uint64_t offset, uint64_t size) {
  const ObjectEntry* e = table_.Find(id);
  if (!e || !e->is_blob) {
    return Status::ObjectNotFound("blob " + id.ToString() + " not found");
  }
  if (e->state != ObjectState::kCreated || e->creator != client) {
    return Status::Invalid("blob " + id.ToString() +
                           (e->state != ObjectState::kCreated
                                ? " is sealed"
                                : " is being written by another client"));
  }
  if (offset > e->size || size > e->size - offset) {
    return Status::Invalid("bytes [" + std::to_string(offset) + ", " +
                           std::to_string(offset + size) +
                           ") are outside blob " + id.ToString() + " of " +
                           std::to_string(e->size) + " bytes");
  }
  return arena_->base() + e->offset + offset;
}

}  // namespace trellis::server
