#include "server/store.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "common/protocol.h"
#include "trellis/object.h"

namespace trellis::server {

using protocol::GetBool;
using protocol::GetId;
using protocol::GetIds;
using protocol::GetString;
using protocol::GetUint;
using protocol::GetUints;
using protocol::IdsToJson;
using protocol::MessageType;

namespace {
constexpr size_t kDefaultListLimit = 1000000;

Result<size_t> GetLimit(const json& body) {
  if (!body.contains("limit")) return kDefaultListLimit;
  TRELLIS_ASSIGN_OR_RAISE(uint64_t limit, GetUint(body, "limit"));
  return static_cast<size_t>(limit);
}

Result<std::string> GetPattern(const json& body) {
  if (!body.contains("pattern")) return std::string("*");
  return GetString(body, "pattern");
}
}  // namespace
Result<std::unique_ptr<Store>> Store::Create(
    const StoreOptions& options, std::unique_ptr<MetaStore> meta,
    std::unique_ptr<SpillStorage> spill, std::string spill_error,
    StoreHooks hooks) {
  if (!(options.spill_low >= 0 && options.spill_low <= options.spill_high &&
        options.spill_high <= 1)) {
    return Status::Invalid(
        "spill watermarks must satisfy 0 <= low <= high <= 1");
  }
  TRELLIS_ASSIGN_OR_RAISE(auto arena,
                          Arena::Create(options.size, options.reserve));
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
      meta_(std::move(meta)),
      spill_(std::move(spill)),
      spill_error_(std::move(spill_error)),
      hooks_(std::move(hooks)) {
  meta_->SetNameListener(
      [this](const std::string& name, ObjectID id) { OnNameBound(name, id); });
  table_.SetSpillFileDropper([this](ObjectID id) { DropSpillFile(id); });
}

// Spill files die with the daemon (SpillStorage's destructor removes them).
// The owner joins the spill workers before destroying the store.
Store::~Store() = default;

ClientId Store::Connect() {
  ClientId client = next_client_++;
  table_.AddClient(client);
  return client;
}

void Store::Disconnect(ClientId client) {
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    it = it->client == client ? waiters_.erase(it) : std::next(it);
  }
  table_.RemoveClient(client);
}

json Store::HelloReply(ClientId client) const {
  return {{"version", protocol::kProtocolVersion},
          {"client_id", client},
          {"instance_id", table_.instance_id()},
          {"arena_size", arena_->size()},
          {"reserved", arena_->reserved()},
          {"max_inline_blob", options_.max_inline_blob}};
}

void Store::Handle(ClientId client, uint16_t type, const json& body,
                   Done done) {
  Result<json> reply = json::object();
  switch (static_cast<MessageType>(type)) {
    case MessageType::kCreateBlobs:
      CreateBlobs(client, body, std::move(done));
      return;
    case MessageType::kPutBlobs:
      PutBlobs(client, body, std::move(done));
      return;
    case MessageType::kSeal: {
      auto ids = GetIds(body, "ids");
      reply = ids.ok() ? Result<json>(json::object()) : ids.status();
      if (ids.ok()) {
        Status st = table_.Seal(client, *ids);
        if (!st.ok()) reply = st;
      }
      break;
    }
    case MessageType::kAbort: {
      auto ids = GetIds(body, "ids");
      reply = ids.ok() ? Result<json>(json::object()) : ids.status();
      if (ids.ok()) {
        Status st = table_.Abort(client, *ids);
        if (!st.ok()) reply = st;
      }
      break;
    }
    case MessageType::kCreateObject:
      reply = CreateObject(client, body);
      break;
    case MessageType::kGetMeta:
      GetMeta(client, body, std::move(done));
      return;
    case MessageType::kGetBlobs:
      GetBlobs(client, body, std::move(done));
      return;
    case MessageType::kRelease: {
      // No reply: a bad release is the client's bug and affects only its own
      // holds, which are dropped anyway when it disconnects.
      auto ids = GetIds(body, "ids");
      if (ids.ok()) (void)table_.Release(client, *ids);
      return;
    }
    case MessageType::kPutName:
      reply = PutName(body);
      break;
    case MessageType::kGetName:
      GetName(client, body, std::move(done));
      return;
    case MessageType::kDropName: {
      auto name = GetString(body, "name");
      reply = name.ok() ? Result<json>(json::object()) : name.status();
      if (name.ok()) {
        Status st = meta_->DropName(*name);
        if (!st.ok()) reply = st;
      }
      break;
    }
    case MessageType::kListNames:
      reply = ListNames(body);
      break;
    case MessageType::kDelete:
      reply = Delete(body);
      break;
    case MessageType::kPersist:
      reply = Persist(body);
      break;
    case MessageType::kListObjects:
      reply = ListObjects(body);
      break;
    case MessageType::kStatus:
      reply = StatusReply();
      break;
    case MessageType::kPin:
      Pin(client, body, std::move(done));
      return;
    case MessageType::kUnpin: {
      auto ids = GetIds(body, "ids");
      reply = ids.ok() ? Result<json>(json::object()) : ids.status();
      if (ids.ok()) {
        Status st = table_.SetPinned(*ids, false);
        if (!st.ok()) reply = st;
      }
      break;
    }
    case MessageType::kEvict:
      Evict(body, std::move(done));
      return;
    case MessageType::kMemoryTrim:
      reply = MemoryTrim();
      break;
    default:
      reply = Status::Invalid("unexpected message type " +
                              protocol::MessageTypeName(type));
  }
  done(std::move(reply));
}

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

Store::MemoryNeed Store::NeedOf(const std::vector<uint64_t>& sizes) {
  MemoryNeed need{0, 0};
  for (uint64_t size : sizes) {
    need.total += Allocator::AlignedSize(size);
    need.largest = std::max(need.largest, Allocator::AlignedSize(size));
  }
  return need;
}

void Store::CreateBlobs(ClientId client, const json& body, Done done) {
  auto sizes = GetUints(body, "sizes");
  if (!sizes.ok()) return done(sizes.status());
  MemoryNeed need = NeedOf(*sizes);
  if (need.total > allocator_.capacity()) {
    return done(
        OutOfMemory(need.total, "the request is larger than the arena"));
  }
  auto shared_done = std::make_shared<Done>(std::move(done));
  WithMemory(
      need,
      [this, client, sizes = std::move(*sizes), shared_done] {
        if (!table_.HasClient(client)) return true;  // gone meanwhile
        auto slots = table_.CreateBlobs(client, sizes);
        if (!slots.ok() && slots.status().IsOutOfMemory()) return false;
        (*shared_done)(slots.ok() ? Result<json>(SlotsReply(*slots))
                                  : Result<json>(slots.status()));
        return true;
      },
      [shared_done](Status st) { (*shared_done)(st); });
}

void Store::PutBlobs(ClientId client, const json& body, Done done) {
  auto data = body.find("data");
  if (data == body.end() || !data->is_array()) {
    return done(
        Status::Invalid("field 'data' must be an array of binary values"));
  }
  std::vector<uint64_t> sizes;
  for (const json& d : *data) {
    if (!d.is_binary()) {
      return done(
          Status::Invalid("field 'data' must be an array of binary values"));
    }
    if (d.get_binary().size() > options_.max_inline_blob) {
      return done(Status::Invalid("inline blob of " +
                                  std::to_string(d.get_binary().size()) +
                                  " bytes exceeds the inline limit of " +
                                  std::to_string(options_.max_inline_blob)));
    }
    sizes.push_back(d.get_binary().size());
  }
  MemoryNeed need = NeedOf(sizes);
  if (need.total > allocator_.capacity()) {
    return done(
        OutOfMemory(need.total, "the request is larger than the arena"));
  }
  auto shared_done = std::make_shared<Done>(std::move(done));
  auto payload = std::make_shared<json>(*data);
  WithMemory(
      need,
      [this, client, sizes = std::move(sizes), payload, shared_done] {
        if (!table_.HasClient(client)) return true;
        auto slots = table_.CreateBlobs(client, sizes);
        if (!slots.ok()) {
          if (slots.status().IsOutOfMemory()) return false;
          (*shared_done)(slots.status());
          return true;
        }
        std::vector<ObjectID> ids;
        for (size_t i = 0; i < slots->size(); ++i) {
          const auto& bytes = (*payload)[i].get_binary();
          if (!bytes.empty()) {
            std::memcpy(arena_->base() + (*slots)[i].offset, bytes.data(),
                        bytes.size());
          }
          ids.push_back((*slots)[i].id);
        }
        Status sealed = table_.Seal(client, ids);
        (*shared_done)(sealed.ok() ? Result<json>(SlotsReply(*slots))
                                   : Result<json>(sealed));
        return true;
      },
      [shared_done](Status st) { (*shared_done)(st); });
}

Result<json> Store::CreateObject(ClientId client, const json& body) {
  TRELLIS_ASSIGN_OR_RAISE(const json* tree, protocol::GetMap(body, "tree"));
  std::string name;
  if (body.contains("name")) {
    TRELLIS_ASSIGN_OR_RAISE(name, GetString(body, "name"));
    if (name.empty()) return Status::Invalid("a name must not be empty");
  }
  TRELLIS_ASSIGN_OR_RAISE(bool overwrite, GetBool(body, "overwrite", true));
  TRELLIS_ASSIGN_OR_RAISE(bool persist, GetBool(body, "persist", false));
  if (!name.empty() && !overwrite && meta_->GetName(name).ok()) {
    return Status::ObjectExists("name '" + name + "' is already bound");
  }
  TRELLIS_ASSIGN_OR_RAISE(ObjectID id, table_.CreateObject(client, *tree));
  if (persist) {
    TRELLIS_ASSIGN_OR_RAISE(json expanded, table_.GetTree(client, id, nullptr));
    TRELLIS_RETURN_NOT_OK(table_.Persist(id));
    TRELLIS_RETURN_NOT_OK(meta_->Publish(id, expanded));
  }
  if (!name.empty()) TRELLIS_RETURN_NOT_OK(BindName(name, id, true));
  return json{{"id", id.value()}};
}

Result<std::vector<ObjectID>> Store::IdsOfNames(const json& body) const {
  auto names = body.find("names");
  if (names == body.end() || !names->is_array()) {
    return Status::Invalid("field 'names' must be an array of strings");
  }
  std::vector<ObjectID> ids;
  ids.reserve(names->size());
  for (const json& name : *names) {
    if (!name.is_string()) {
      return Status::Invalid("field 'names' must be an array of strings");
    }
    TRELLIS_ASSIGN_OR_RAISE(ObjectID id,
                            meta_->GetName(name.get<std::string>()));
    ids.push_back(id);
  }
  return ids;
}

void Store::GetMeta(ClientId client, const json& body, Done done) {
  bool by_name = body.contains("names");
  if (by_name && body.contains("ids")) {
    return done(Status::Invalid("GetMeta takes 'ids' or 'names', not both"));
  }
  auto ids = by_name ? IdsOfNames(body) : GetIds(body, "ids");
  if (!ids.ok()) return done(ids.status());
  // relocate: offsets for a remote reader of ReadBlobs(held) (protocol.md).
  auto relocate_field = GetBool(body, "relocate", false);
  if (!relocate_field.ok()) return done(relocate_field.status());
  bool relocate = *relocate_field;
  EnsureResident(*ids, [this, client, ids = *ids, relocate, done](Status st) {
    if (!table_.HasClient(client)) return;
    if (!st.ok()) return done(st);
    // {trees: [...], held: [...]} written straight as MessagePack: each
    // object's tree comes encoded from the table's cache.
    std::vector<uint8_t> body;
    std::vector<ObjectID> held;
    protocol::AppendMsgpackMapHeader(2, &body);
    protocol::AppendMsgpackString("trees", &body);
    protocol::AppendMsgpackArrayHeader(ids.size(), &body);
    uint64_t end = 0;  // of the relocated layout
    for (ObjectID id : ids) {
      Status got = relocate
                       ? table_.GetTreeRelocated(client, id, &body, &held, &end)
                       : table_.GetTreeEncoded(client, id, &body, &held);
      if (!got.ok()) {
        (void)table_.Release(client, held);  // all or nothing
        return done(got);
      }
    }
    protocol::AppendMsgpackString("held", &body);
    protocol::AppendMsgpackArrayHeader(held.size(), &body);
    for (ObjectID h : held) protocol::AppendMsgpackUint(h.value(), &body);
    done(protocol::EncodedBody(std::move(body)));
  });
}

void Store::GetBlobs(ClientId client, const json& body, Done done) {
  auto ids = GetIds(body, "ids");
  if (!ids.ok()) return done(ids.status());
  for (ObjectID id : *ids) {  // a clear error before any reload starts
    const ObjectEntry* e = table_.Find(id);
    if (e && !e->is_blob) {
      return done(Status::Invalid(id.ToString() + " is a " + e->type_name +
                                  ", not a blob"));
    }
  }
  EnsureResident(*ids, [this, client, ids = *ids, done](Status st) {
    if (!table_.HasClient(client)) return;
    if (!st.ok()) return done(st);
    std::vector<ObjectID> held;
    std::vector<BlobSlot> slots;
    slots.reserve(ids.size());
    for (ObjectID id : ids) {
      auto slot = table_.GetBlob(client, id);
      if (!slot.ok()) {
        (void)table_.Release(client, held);
        return done(slot.status());
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
    for (const BlobSlot& s : slots) protocol::AppendMsgpackUint(s.size, &reply);
    done(protocol::EncodedBody(std::move(reply)));
  });
}

Status Store::BindName(const std::string& name, ObjectID id, bool overwrite) {
  const ObjectEntry* e = table_.Find(id);
  if (!e)
    return Status::ObjectNotFound("object " + id.ToString() + " not found");
  if (e->state != ObjectState::kSealed) {
    return Status::NotSealed("object " + id.ToString() +
                             " is not sealed and cannot be named");
  }
  return meta_->PutName(name, id, overwrite);
}

Result<json> Store::PutName(const json& body) {
  TRELLIS_ASSIGN_OR_RAISE(std::string name, GetString(body, "name"));
  TRELLIS_ASSIGN_OR_RAISE(ObjectID id, GetId(body, "id"));
  TRELLIS_ASSIGN_OR_RAISE(bool overwrite, GetBool(body, "overwrite", true));
  TRELLIS_RETURN_NOT_OK(BindName(name, id, overwrite));
  return json::object();
}

void Store::GetName(ClientId client, const json& body, Done done) {
  auto name = GetString(body, "name");
  auto wait = GetBool(body, "wait", false);
  uint64_t timeout_ms = 0;
  if (body.contains("timeout_ms")) {
    auto t = GetUint(body, "timeout_ms");
    if (!t.ok()) return done(t.status());
    timeout_ms = *t;
  }
  if (!name.ok()) return done(name.status());
  if (!wait.ok()) return done(wait.status());
  auto id = meta_->GetName(*name);
  if (id.ok()) return done(json{{"id", id->value()}});
  if (!*wait) return done(id.status());
  uint64_t waiter_id = next_waiter_++;
  waiters_.push_back(Waiter{waiter_id, client, *name, std::move(done)});
  if (timeout_ms > 0) {
    hooks_.run_after(std::chrono::milliseconds(timeout_ms), [this, waiter_id,
                                                             timeout_ms] {
      for (auto it = waiters_.begin(); it != waiters_.end(); ++it) {
        if (it->waiter_id != waiter_id) continue;
        Done expired = std::move(it->done);
        std::string name = it->name;
        waiters_.erase(it);
        expired(Status::Timeout("no object was named '" + name + "' within " +
                                std::to_string(timeout_ms) + " ms"));
        return;
      }
    });
  }
}

void Store::OnNameBound(const std::string& name, ObjectID id) {
  WaiterList ready;
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    auto next = std::next(it);
    if (it->name == name) ready.splice(ready.end(), waiters_, it);
    it = next;
  }
  for (Waiter& w : ready) w.done(json{{"id", id.value()}});
}

Result<json> Store::ListNames(const json& body) {
  TRELLIS_ASSIGN_OR_RAISE(std::string pattern, GetPattern(body));
  TRELLIS_ASSIGN_OR_RAISE(size_t limit, GetLimit(body));
  json names = json::array(), ids = json::array();
  for (const auto& [name, id] : meta_->ListNames(pattern, limit)) {
    names.push_back(name);
    ids.push_back(id.value());
  }
  return json{{"names", std::move(names)}, {"ids", std::move(ids)}};
}

Result<json> Store::Delete(const json& body) {
  TRELLIS_ASSIGN_OR_RAISE(std::vector<ObjectID> ids, GetIds(body, "ids"));
  TRELLIS_ASSIGN_OR_RAISE(bool deep, GetBool(body, "deep", true));
  TRELLIS_ASSIGN_OR_RAISE(bool force, GetBool(body, "force", false));
  TRELLIS_ASSIGN_OR_RAISE(std::vector<ObjectID> deleted,
                          table_.Delete(ids, deep, force));
  for (ObjectID id : deleted) {
    meta_->DropNamesOf(id);
    meta_->Unpublish(id);
  }
  return json{{"deleted", IdsToJson(deleted)}};
}

Result<json> Store::Persist(const json& body) {
  TRELLIS_ASSIGN_OR_RAISE(ObjectID id, GetId(body, "id"));
  TRELLIS_RETURN_NOT_OK(table_.Persist(id));
  TRELLIS_ASSIGN_OR_RAISE(json tree, table_.GetTree(0, id, nullptr));
  TRELLIS_RETURN_NOT_OK(meta_->Publish(id, tree));
  return json::object();
}

Result<json> Store::ListObjects(const json& body) {
  TRELLIS_ASSIGN_OR_RAISE(std::string pattern, GetPattern(body));
  TRELLIS_ASSIGN_OR_RAISE(size_t limit, GetLimit(body));
  json objects = json::array();
  for (json& item : table_.List(pattern, limit)) {
    objects.push_back(std::move(item));
  }
  return json{{"objects", std::move(objects)}};
}

json Store::StatusReply() const {
  TableStats stats = table_.Stats();
  return {{"instance_id", table_.instance_id()},
          {"backend", meta_->backend()},
          {"arena_size", arena_->size()},
          {"reserved", arena_->reserved()},
          {"used", allocator_.used()},
          {"free", allocator_.free_bytes()},
          {"held_bytes", stats.held_bytes},
          {"pinned_bytes", stats.pinned_bytes},
          {"objects", stats.objects},
          {"blobs", stats.blobs},
          {"unsealed_blobs", stats.unsealed_blobs},
          {"deleted_pending", stats.deleted_pending},
          {"clients", table_.client_count()},
          {"spill_enabled", spill_ != nullptr},
          {"spill_dir", spill_ ? spill_->location() : ""},
          {"spill_error", spill_error_},
          {"spill_high", options_.spill_high},
          {"spill_low", options_.spill_low},
          {"spilled_blobs", stats.spilled_blobs},
          {"spilled_bytes", stats.spilled_bytes},
          {"spill_count", counters_.spills},
          {"spill_bytes_total", counters_.spilled_bytes},
          {"spill_failures", counters_.spill_failures},
          {"reload_count", counters_.reloads},
          {"reload_bytes_total", counters_.reloaded_bytes},
          {"reload_failures", counters_.reload_failures},
          {"out_of_memory_count", counters_.out_of_memory},
          {"arena_resident_bytes", arena_->ResidentBytes()},
          {"trimmed_bytes_total", counters_.trimmed_bytes}};
}

// ------------------------------------------------------------ memory pressure

Status Store::OutOfMemory(uint64_t bytes, const std::string& reason) const {
  TableStats stats = table_.Stats();
  std::string spill;
  if (spill_) {
    spill = "spilling to " + spill_->location();
  } else if (spill_error_.empty()) {
    spill = "spilling is off (no --spill-dir)";
  } else {
    spill = "spilling is off (" + spill_error_ + ")";
  }
  return Status::OutOfMemory(
      "cannot allocate " + std::to_string(bytes) + " bytes: " + reason +
      "; arena " + std::to_string(arena_->size()) + " bytes, " +
      std::to_string(allocator_.free_bytes()) + " free (largest free range " +
      std::to_string(allocator_.largest_free()) + "), " +
      std::to_string(stats.held_bytes) + " held by live readers, " +
      std::to_string(stats.pinned_bytes) + " pinned, " +
      std::to_string(stats.spilled_bytes) + " already spilled; " + spill);
}

void Store::WithMemory(MemoryNeed need, std::function<bool()> attempt,
                       std::function<void(Status)> fail) {
  if (attempt()) {
    SpillAboveHighWatermark();
    return;
  }
  if (!spill_) {
    counters_.out_of_memory++;
    return fail(OutOfMemory(need.total, "the arena is full"));
  }
  pending_.push_back({need, std::move(attempt), std::move(fail)});
  PumpPending();
}

void Store::PumpPending(bool may_spill, const std::string& reason) {
  while (!pending_.empty()) {
    PendingAlloc& head = pending_.front();
    if (head.attempt()) {
      pending_.pop_front();
      continue;
    }
    if (spills_in_flight_ > 0) return;  // their completion pumps again
    if (!may_spill) {
      FailPending(reason);
      return;
    }
    // Spill what the head lacks (with one free range for its largest blob),
    // and down to the low watermark on the way.
    uint64_t low = static_cast<uint64_t>(options_.spill_low *
                                         static_cast<double>(arena_->size()));
    uint64_t free = allocator_.free_bytes();
    uint64_t missing = head.need.total > free ? head.need.total - free : 0;
    uint64_t target = allocator_.used() + head.need.total;
    uint64_t want = std::max(missing, target > low ? target - low : 0);
    std::vector<SpillJob> jobs = table_.StartSpillsFor(head.need.largest, want);
    // Room enough in total, just not where the head's smaller blobs fit.
    if (jobs.empty()) jobs = table_.StartSpills(head.need.total);
    if (jobs.empty()) {
      FailPending("nothing more can be spilled");
      return;
    }
    for (const SpillJob& job : jobs) LaunchSpill(job, nullptr);
    return;
  }
  SpillAboveHighWatermark();
}

void Store::FailPending(const std::string& reason) {
  std::deque<PendingAlloc> failed;
  failed.swap(pending_);
  for (PendingAlloc& p : failed) {
    counters_.out_of_memory++;
    p.fail(OutOfMemory(p.need.total, reason));
  }
}

void Store::SpillAboveHighWatermark() {
  if (!spill_) return;
  double size = static_cast<double>(arena_->size());
  uint64_t used = allocator_.used() - spill_bytes_in_flight_;
  uint64_t high = static_cast<uint64_t>(options_.spill_high * size);
  uint64_t low = static_cast<uint64_t>(options_.spill_low * size);
  if (used <= high) return;
  for (const SpillJob& job : table_.StartSpills(used - low)) {
    LaunchSpill(job, nullptr);
  }
}

void Store::LaunchSpill(const SpillJob& job, std::function<void(Status)> then) {
  spills_in_flight_++;
  spill_bytes_in_flight_ += job.size;
  auto result = std::make_shared<Status>();
  const uint8_t* bytes = arena_->base() + job.offset;
  SpillStorage* storage = spill_.get();
  hooks_.run_in_background(
      [storage, job, bytes, result] {
        *result = storage->Write(job.id, bytes, job.size);
      },
      [this, job, result, then = std::move(then)] {
        OnSpillDone(job, *result, then);
      });
}

void Store::OnSpillDone(const SpillJob& job, Status written,
                        std::function<void(Status)> then) {
  spills_in_flight_--;
  spill_bytes_in_flight_ -= job.size;
  bool spilled = table_.FinishSpill(job.id, written.ok());
  if (written.ok()) {
    if (spilled) {
      counters_.spills++;
      counters_.spilled_bytes += job.size;
    } else {
      DropSpillFile(job.id);  // gotten, pinned or deleted meanwhile
    }
  } else {
    counters_.spill_failures++;
    spill_error_ = written.message();
    spill_failed_in_round_ = true;
    spdlog::error("spilling {} failed: {}", job.id.ToString(),
                  written.message());
  }
  if (then) then(written);
  if (spills_in_flight_ == 0 && spill_failed_in_round_) {
    spill_failed_in_round_ = false;
    if (file_deletes_in_flight_ > 0) {
      // Perhaps only short of the space those deletes are freeing: try
      // again once they are done (DropSpillFile pumps).
      retry_after_deletes_ = true;
      return;
    }
    // Do not retry forever against a full or broken disk: what fits in the
    // memory the successful spills freed goes ahead, the rest fails with
    // the reason, and later requests try spilling afresh.
    PumpPending(/*may_spill=*/false, "spilling failed: " + spill_error_);
    return;
  }
  PumpPending();
}

void Store::DropSpillFile(ObjectID blob) {
  if (!spill_) return;
  // Forgotten now, deleted on a worker: unlinking a large file can take
  // milliseconds, and the reply (or the next request) need not wait for it.
  file_deletes_in_flight_++;
  hooks_.run_in_background(spill_->Detach(blob), [this] {
    if (--file_deletes_in_flight_ > 0 || !retry_after_deletes_) return;
    retry_after_deletes_ = false;
    PumpPending();
  });
}

void Store::EnsureResident(const std::vector<ObjectID>& ids,
                           std::function<void(Status)> then) {
  auto blobs = table_.BlobsOf(ids);
  if (!blobs.ok()) return then(blobs.status());
  std::vector<ObjectID> missing;
  for (ObjectID blob : *blobs) {
    table_.AddTransientPin(blob);
    if (!table_.FindAny(blob)->resident()) missing.push_back(blob);
  }
  auto finish = [this, blobs = *blobs, then = std::move(then)](Status st) {
    then(st);
    for (ObjectID blob : blobs) table_.RemoveTransientPin(blob);
  };
  if (missing.empty()) return finish(Status::OK());
  struct Gather {
    size_t remaining;
    Status first_error;
    std::function<void(Status)> finish;
  };
  auto gather = std::make_shared<Gather>(
      Gather{missing.size(), Status::OK(), std::move(finish)});
  for (ObjectID blob : missing) {
    RequestReload(blob, [gather](Status st) {
      if (!st.ok() && gather->first_error.ok()) gather->first_error = st;
      if (--gather->remaining == 0) gather->finish(gather->first_error);
    });
  }
}

void Store::RequestReload(ObjectID blob, std::function<void(Status)> then) {
  auto& waiters = reload_waiters_[blob];
  waiters.push_back(std::move(then));
  if (waiters.size() > 1) return;  // a reload is under way: wait for it
  uint64_t size = Allocator::AlignedSize(table_.FindAny(blob)->size);
  WithMemory(
      {size, size},
      [this, blob] {
        const ObjectEntry* entry = table_.FindAny(blob);
        if (!entry || entry->residence != Residence::kSpilled) {
          FinishReloadWaiters(blob, Status::OK());  // resident, or gone
          return true;
        }
        auto job = table_.StartReload(blob);
        if (!job.ok()) return false;  // out of memory: wait for spills
        auto result = std::make_shared<Status>();
        uint8_t* bytes = arena_->base() + job->offset;
        SpillStorage* storage = spill_.get();
        hooks_.run_in_background(
            [storage, job = *job, bytes, result] {
              *result = storage->Read(job.id, bytes, job.size);
            },
            [this, job = *job, result] {
              table_.FinishReload(job.id, result->ok());
              if (result->ok()) {
                DropSpillFile(job.id);
                counters_.reloads++;
                counters_.reloaded_bytes += job.size;
              } else {
                counters_.reload_failures++;
                spdlog::error("reloading {} failed: {}", job.id.ToString(),
                              result->message());
              }
              FinishReloadWaiters(job.id, *result);
              PumpPending();
            });
        return true;
      },
      [this, blob](Status st) { FinishReloadWaiters(blob, st); });
}

void Store::FinishReloadWaiters(ObjectID blob, const Status& status) {
  auto it = reload_waiters_.find(blob);
  if (it == reload_waiters_.end()) return;
  auto waiters = std::move(it->second);
  reload_waiters_.erase(it);
  for (auto& w : waiters) w(status);
}

void Store::Pin(ClientId client, const json& body, Done done) {
  auto ids = GetIds(body, "ids");
  if (!ids.ok()) return done(ids.status());
  // Pin first (nothing spills the blobs from now on), then bring back those
  // already on disk.
  Status st = table_.SetPinned(*ids, true);
  if (!st.ok()) return done(st);
  EnsureResident(*ids, [this, client, done](Status st) {
    if (!table_.HasClient(client)) return;
    done(st.ok() ? Result<json>(json::object()) : Result<json>(st));
  });
}

void Store::Evict(const json& body, Done done) {
  auto ids = GetIds(body, "ids");
  if (!ids.ok()) return done(ids.status());
  if (!spill_) {
    return done(Status::Invalid(
        spill_error_.empty()
            ? "cannot evict: spilling is off (start trellisd with --spill-dir)"
            : "cannot evict: spilling is off (" + spill_error_ + ")"));
  }
  auto jobs = table_.StartEvictions(*ids);
  if (!jobs.ok()) return done(jobs.status());
  if (jobs->empty()) return done(json{{"evicted_bytes", 0}});
  struct Gather {
    size_t remaining;
    uint64_t bytes;
    Status first_error;
    Done done;
  };
  auto gather = std::make_shared<Gather>(
      Gather{jobs->size(), 0, Status::OK(), std::move(done)});
  for (const SpillJob& job : *jobs) {
    LaunchSpill(job, [gather, size = job.size](Status st) {
      if (st.ok()) {
        gather->bytes += size;
      } else if (gather->first_error.ok()) {
        gather->first_error = st;
      }
      if (--gather->remaining > 0) return;
      gather->done(gather->first_error.ok()
                       ? Result<json>(json{{"evicted_bytes", gather->bytes}})
                       : Result<json>(gather->first_error));
    });
  }
}

Result<json> Store::MemoryTrim() {
  uint64_t before = arena_->ResidentBytes();
  for (const auto& [offset, length] : allocator_.FreeRanges()) {
    TRELLIS_RETURN_NOT_OK(arena_->Discard(offset, length));
  }
  uint64_t after = arena_->ResidentBytes();
  uint64_t trimmed = before > after ? before - after : 0;
  counters_.trimmed_bytes += trimmed;
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
