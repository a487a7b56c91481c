#include "server/store.h"

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
  ASSIGN_OR_RAISE(uint64_t limit, GetUint(body, "limit"));
  return static_cast<size_t>(limit);
}

Result<std::string> GetPattern(const json& body) {
  if (!body.contains("pattern")) return std::string("*");
  return GetString(body, "pattern");
}
}  // namespace

Result<std::unique_ptr<Store>> Store::Create(const StoreOptions& options,
                                             std::unique_ptr<MetaStore> meta,
                                             RunAfter run_after) {
  ASSIGN_OR_RAISE(auto arena, Arena::Create(options.size, options.reserve));
  return std::unique_ptr<Store>(new Store(
      options, std::move(arena), std::move(meta), std::move(run_after)));
}

Store::Store(const StoreOptions& options, std::unique_ptr<Arena> arena,
             std::unique_ptr<MetaStore> meta, RunAfter run_after)
    : options_(options),
      arena_(std::move(arena)),
      allocator_(arena_->size()),
      table_(&allocator_, options.instance_id),
      meta_(std::move(meta)),
      run_after_(std::move(run_after)) {
  meta_->SetNameListener(
      [this](const std::string& name, ObjectID id) { OnNameBound(name, id); });
}

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
      reply = CreateBlobs(client, body);
      break;
    case MessageType::kPutBlobs:
      reply = PutBlobs(client, body);
      break;
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
      reply = GetMeta(client, body);
      break;
    case MessageType::kGetBlobs:
      reply = GetBlobs(client, body);
      break;
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
    default:
      reply = Status::Invalid("unexpected message type " +
                              protocol::MessageTypeName(type));
  }
  done(std::move(reply));
}

Result<json> Store::CreateBlobs(ClientId client, const json& body) {
  ASSIGN_OR_RAISE(std::vector<uint64_t> sizes, GetUints(body, "sizes"));
  ASSIGN_OR_RAISE(std::vector<BlobSlot> slots,
                  table_.CreateBlobs(client, sizes));
  json ids = json::array(), offsets = json::array();
  for (const BlobSlot& s : slots) {
    ids.push_back(s.id.value());
    offsets.push_back(s.offset);
  }
  return json{{"ids", std::move(ids)}, {"offsets", std::move(offsets)}};
}

Result<json> Store::PutBlobs(ClientId client, const json& body) {
  auto data = body.find("data");
  if (data == body.end() || !data->is_array()) {
    return Status::Invalid("field 'data' must be an array of binary values");
  }
  std::vector<uint64_t> sizes;
  for (const json& d : *data) {
    if (!d.is_binary()) {
      return Status::Invalid("field 'data' must be an array of binary values");
    }
    if (d.get_binary().size() > options_.max_inline_blob) {
      return Status::Invalid("inline blob of " +
                             std::to_string(d.get_binary().size()) +
                             " bytes exceeds the inline limit of " +
                             std::to_string(options_.max_inline_blob));
    }
    sizes.push_back(d.get_binary().size());
  }
  ASSIGN_OR_RAISE(std::vector<BlobSlot> slots,
                  table_.CreateBlobs(client, sizes));
  std::vector<ObjectID> ids;
  json offsets = json::array();
  for (size_t i = 0; i < slots.size(); ++i) {
    const auto& bytes = (*data)[i].get_binary();
    if (!bytes.empty()) {
      std::memcpy(arena_->base() + slots[i].offset, bytes.data(), bytes.size());
    }
    ids.push_back(slots[i].id);
    offsets.push_back(slots[i].offset);
  }
  RETURN_NOT_OK(table_.Seal(client, ids));
  return json{{"ids", IdsToJson(ids)}, {"offsets", std::move(offsets)}};
}

Result<json> Store::CreateObject(ClientId client, const json& body) {
  ASSIGN_OR_RAISE(const json* tree, protocol::GetMap(body, "tree"));
  std::string name;
  if (body.contains("name")) {
    ASSIGN_OR_RAISE(name, GetString(body, "name"));
    if (name.empty()) return Status::Invalid("a name must not be empty");
  }
  ASSIGN_OR_RAISE(bool overwrite, GetBool(body, "overwrite", true));
  ASSIGN_OR_RAISE(bool persist, GetBool(body, "persist", false));
  if (!name.empty() && !overwrite && meta_->GetName(name).ok()) {
    return Status::ObjectExists("name '" + name + "' is already bound");
  }
  ASSIGN_OR_RAISE(ObjectID id, table_.CreateObject(client, *tree));
  if (persist) {
    ASSIGN_OR_RAISE(json expanded, table_.GetTree(client, id, nullptr));
    RETURN_NOT_OK(table_.Persist(id));
    RETURN_NOT_OK(meta_->Publish(id, expanded));
  }
  if (!name.empty()) RETURN_NOT_OK(BindName(name, id, true));
  return json{{"id", id.value()}};
}

Result<json> Store::GetMeta(ClientId client, const json& body) {
  ASSIGN_OR_RAISE(std::vector<ObjectID> ids, GetIds(body, "ids"));
  json trees = json::array();
  std::vector<ObjectID> held;
  for (ObjectID id : ids) {
    auto tree = table_.GetTree(client, id, &held);
    if (!tree.ok()) {
      (void)table_.Release(client, held);  // all or nothing
      return tree.status();
    }
    trees.push_back(std::move(tree).value());
  }
  return json{{"trees", std::move(trees)}, {"held", IdsToJson(held)}};
}

Result<json> Store::GetBlobs(ClientId client, const json& body) {
  ASSIGN_OR_RAISE(std::vector<ObjectID> ids, GetIds(body, "ids"));
  json offsets = json::array(), sizes = json::array();
  std::vector<ObjectID> held;
  for (ObjectID id : ids) {
    auto slot = table_.GetBlob(client, id);
    if (!slot.ok()) {
      (void)table_.Release(client, held);
      return slot.status();
    }
    held.push_back(id);
    offsets.push_back(slot->offset);
    sizes.push_back(slot->size);
  }
  return json{{"offsets", std::move(offsets)}, {"sizes", std::move(sizes)}};
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
  ASSIGN_OR_RAISE(std::string name, GetString(body, "name"));
  ASSIGN_OR_RAISE(ObjectID id, GetId(body, "id"));
  ASSIGN_OR_RAISE(bool overwrite, GetBool(body, "overwrite", true));
  RETURN_NOT_OK(BindName(name, id, overwrite));
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
    run_after_(std::chrono::milliseconds(timeout_ms), [this, waiter_id,
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
  ASSIGN_OR_RAISE(std::string pattern, GetPattern(body));
  ASSIGN_OR_RAISE(size_t limit, GetLimit(body));
  json names = json::array(), ids = json::array();
  for (const auto& [name, id] : meta_->ListNames(pattern, limit)) {
    names.push_back(name);
    ids.push_back(id.value());
  }
  return json{{"names", std::move(names)}, {"ids", std::move(ids)}};
}

Result<json> Store::Delete(const json& body) {
  ASSIGN_OR_RAISE(std::vector<ObjectID> ids, GetIds(body, "ids"));
  ASSIGN_OR_RAISE(bool deep, GetBool(body, "deep", true));
  ASSIGN_OR_RAISE(bool force, GetBool(body, "force", false));
  ASSIGN_OR_RAISE(std::vector<ObjectID> deleted,
                  table_.Delete(ids, deep, force));
  for (ObjectID id : deleted) {
    meta_->DropNamesOf(id);
    meta_->Unpublish(id);
  }
  return json{{"deleted", IdsToJson(deleted)}};
}

Result<json> Store::Persist(const json& body) {
  ASSIGN_OR_RAISE(ObjectID id, GetId(body, "id"));
  RETURN_NOT_OK(table_.Persist(id));
  ASSIGN_OR_RAISE(json tree, table_.GetTree(0, id, nullptr));
  RETURN_NOT_OK(meta_->Publish(id, tree));
  return json::object();
}

Result<json> Store::ListObjects(const json& body) {
  ASSIGN_OR_RAISE(std::string pattern, GetPattern(body));
  ASSIGN_OR_RAISE(size_t limit, GetLimit(body));
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
          {"objects", stats.objects},
          {"blobs", stats.blobs},
          {"unsealed_blobs", stats.unsealed_blobs},
          {"deleted_pending", stats.deleted_pending},
          {"clients", table_.client_count()}};
}

}  // namespace trellis::server
