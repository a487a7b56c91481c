// The Store's requests that touch the MetaStore: names (CreateObject with a
// name, GetMeta by names, PutName, GetName, DropName, ListNames, Delete) and
// published trees (Persist). Every MetaStore call may complete later, after
// the request's body is gone and perhaps after its client disconnected.
#include <cstring>

#include "common/protocol.h"
#include "common/tree_format.h"
#include "server/callbacks.h"
#include "server/request_body.h"
#include "server/store.h"

namespace trellis::server {

using protocol::GetBool;
using protocol::GetId;
using protocol::GetIds;
using protocol::GetMap;
using protocol::GetString;
using protocol::GetUint;
using protocol::IdsToJson;

namespace {

Result<json> IdReply(const Result<ObjectID>& id) {
  if (!id.ok()) return id.status();
  return json{{"id", id->value()}};
}

MetaStore::StatusCallback EmptyReplyTo(Store::Done done) {
  return [done = std::move(done)](Status st) { done(EmptyReply(st)); };
}

}  // namespace

// --------------------------------------------------------------- CreateObject

namespace {

// {"id": 0}: in a CreateObject with `data`, the blob made of those bytes.
bool IsInlineBlobRef(const json& node) {
  if (!node.is_object() || node.size() != 1) return false;
  auto id = node.find(format::kIdKey);
  return id != node.end() && id->is_number_integer() && id->get<int64_t>() == 0;
}

// Counts the {"id": 0} members below `node` and, with a valid `blob`,
// makes them name it. Trees nest at most kMaxBodyDepth levels (the decoder
// refuses deeper bodies), which bounds the recursion.
size_t ResolveInlineBlobRefs(json* node, ObjectID blob) {
  auto members = node->find(format::kMembersKey);
  if (members == node->end() || !members->is_object()) return 0;
  size_t found = 0;
  for (auto& [name, member] : members->items()) {
    if (IsInlineBlobRef(member)) {
      if (blob.valid()) member[format::kIdKey] = blob.value();
      ++found;
    } else if (member.is_object()) {
      found += ResolveInlineBlobRefs(&member, blob);
    }
  }
  return found;
}

}  // namespace

Status Store::CreateObject(ClientId client, json& body, Done& done) {
  TRELLIS_ASSIGN_OR_RAISE(const json* tree, GetMap(body, "tree"));
  TRELLIS_ASSIGN_OR_RAISE(std::string name, GetOptionalName(body, "name"));
  TRELLIS_ASSIGN_OR_RAISE(bool overwrite, GetBool(body, "overwrite", true));
  TRELLIS_ASSIGN_OR_RAISE(bool persist, GetBool(body, "persist", false));
  TRELLIS_ASSIGN_OR_RAISE(
      const json* data,
      GetOptionalInlineBlob(body, "data", options_.max_inline_blob));
  // Spare blobs (docs/protocol.md): one to ask for, ones given back, and a
  // trim of the one this put fills.
  uint64_t spare = 0;
  if (body.contains("spare")) {
    TRELLIS_ASSIGN_OR_RAISE(spare, GetUint(body, "spare"));
    if (spare > kMaxSpareBlob) {
      return Status::Invalid("'spare' of " + std::to_string(spare) +
                             " bytes is over the limit of " +
                             std::to_string(kMaxSpareBlob));
    }
  }
  // The id reserved for this client (a spare's "object"): the root gets it.
  ObjectID as;
  if (body.contains("id")) {
    TRELLIS_ASSIGN_OR_RAISE(as, GetId(body, "id"));
  }
  std::vector<ObjectID> given_back;
  if (body.contains("abort")) {
    TRELLIS_ASSIGN_OR_RAISE(given_back, GetIds(body, "abort"));
  }
  ObjectID trimmed;
  uint64_t trim_size = 0;
  if (body.contains("trim")) {
    TRELLIS_ASSIGN_OR_RAISE(const json* trim, GetMap(body, "trim"));
    TRELLIS_ASSIGN_OR_RAISE(trimmed, GetId(*trim, "id"));
    TRELLIS_ASSIGN_OR_RAISE(trim_size, GetUint(*trim, "size"));
  }
  if (data) {
    if (IsGlobalTree(*tree)) {
      return Status::Invalid(
          "a global object has no blobs: 'data' is not allowed with "
          "\"global\": true");
    }
    if (ResolveInlineBlobRefs(&body["tree"], ObjectID()) == 0) {
      return Status::Invalid(
          "'data' is given but no member of the tree is {\"id\": 0}");
    }
  }
  if (!given_back.empty()) {
    TRELLIS_RETURN_NOT_OK(table_.Abort(client, given_back));
  }
  if (trimmed.valid()) {
    TRELLIS_RETURN_NOT_OK(table_.Trim(client, trimmed, trim_size));
  }
  // From here on errors go to the call's `done`.
  auto call = std::make_shared<CreateCall>(
      CreateCall{client,
                 std::move(body["tree"]),
                 std::move(name),
                 overwrite,
                 persist,
                 ObjectID(),
                 ForClient(client, std::move(done)),
                 {},
                 data != nullptr,
                 ObjectID()});
  if (data) call->data = std::move(body["data"].get_binary());
  call->spare = spare;
  call->as = as;
  if (call->name.empty()) {
    BuildObject(call);
  } else {
    name_locks_.Acquire(call->name, [this, call] { CheckNameFree(call); });
  }
  return Status::OK();
}

void Store::CheckNameFree(std::shared_ptr<CreateCall> call) {
  if (!call->overwrite) {
    // Fails before anything is created. No bind of the name from this
    // daemon can come between this check and ours (the name is locked).
    meta_->GetName(call->name, [this, call](Result<ObjectID> bound) {
      if (bound.ok()) {
        return FinishCreate(call, Status::ObjectExists("name '" + call->name +
                                                       "' is already bound"));
      }
      if (!bound.status().IsObjectNotFound()) {
        return FinishCreate(call, bound.status());
      }
      BuildObject(call);
    });
    return;
  }
  BuildObject(call);
}

void Store::BuildObject(std::shared_ptr<CreateCall> call) {
  // Gone meanwhile: its unsealed blobs, which the tree may use, are aborted.
  if (!table_.HasClient(call->client)) return FinishCreate(call, Status::OK());
  if (call->has_data) return AllocateInlineBlob(call);
  BuildTree(call);
}

void Store::AllocateInlineBlob(std::shared_ptr<CreateCall> call) {
  call->has_data = false;
  MemoryNeed need = MemoryNeed::Of({call->data.size()});
  if (need.total > allocator_.capacity()) {
    return FinishCreate(
        call, memory_.OutOfMemory(need.total,
                                  "the request is larger than the arena"));
  }
  memory_.WithMemory(
      need,
      [this, call] {
        if (!table_.HasClient(call->client)) {
          FinishCreate(call, Status::OK());
          return true;
        }
        auto slots = table_.CreateBlobs(call->client, {call->data.size()});
        if (!slots.ok()) {
          if (slots.status().IsOutOfMemory()) return false;
          FinishCreate(call, slots.status());
          return true;
        }
        const BlobSlot& slot = slots->front();
        Status written =
            arena_->Write(slot.offset, call->data.data(), call->data.size());
        call->data = {};
        if (!written.ok()) {
          (void)table_.Abort(call->client, {slot.id});
          FinishCreate(call, written);
          return true;
        }
        call->inline_blob = slot.id;
        ResolveInlineBlobRefs(&call->tree, slot.id);
        BuildTree(call);
        return true;
      },
      [this, call](Status st) { FinishCreate(call, st); });
}

void Store::BuildTree(std::shared_ptr<CreateCall> call) {
  if (IsGlobalTree(call->tree)) {
    if (call->as.valid()) {
      return FinishCreate(
          call, Status::Invalid("a reserved id (" + call->as.ToString() +
                                ") is not for a global object"));
    }
    Status st = BuildGlobal(call);
    if (!st.ok()) FinishCreate(call, st);
    return;
  }
  auto id = table_.CreateObject(call->client, std::move(call->tree), call->as);
  call->tree = nullptr;
  if (!id.ok()) return FinishCreate(call, id.status());
  call->id = *id;
  if (!call->persist) return BindCreated(call);
  auto expanded = table_.GetTree(call->client, call->id, nullptr);
  if (!expanded.ok()) return FinishCreate(call, expanded.status());
  Status persisted = table_.Persist(call->id);
  if (!persisted.ok()) return FinishCreate(call, persisted);
  meta_->Publish(call->id, *expanded, [this, call](Status st) {
    if (!st.ok()) return FinishCreate(call, st);
    BindCreated(call);
  });
}

void Store::BindCreated(std::shared_ptr<CreateCall> call) {
  if (call->name.empty()) return FinishCreate(call, Status::OK());
  // In a cluster another instance may bind the name between the check and
  // this bind: the object then exists unnamed and the reply is ObjectExists.
  meta_->PutName(call->name, call->id, call->overwrite,
                 [this, call](Status st) { FinishCreate(call, st); });
}

void Store::FinishCreate(std::shared_ptr<CreateCall> call, Status status) {
  call->tree = nullptr;
  if (!status.ok() && call->inline_blob.valid() &&
      table_.HasClient(call->client)) {
    // The data's blob, unless an object took it (then a failed name bind
    // leaves the object unnamed, as without data).
    (void)table_.Abort(call->client, {call->inline_blob});
  }
  if (!status.ok()) {
    call->done(status);
  } else {
    json reply{{"id", call->id.value()}};
    if (call->spare > 0 && call->id.valid()) {
      GrantSpare(call->client, call->spare, &reply);
    }
    call->done(std::move(reply));
  }
  if (!call->name.empty()) name_locks_.Release(call->name);
}

void Store::GrantSpare(ClientId client, uint64_t size, json* reply) {
  if (!table_.HasClient(client) || memory_.waiting_requests() > 0) return;
  uint64_t after = allocator_.used() + Allocator::AlignedSize(size);
  if (after > allocator_.capacity() / 4 * 3) return;
  auto slots = table_.CreateBlobs(client, {size});
  if (!slots.ok()) return;  // fragmented: the next put goes without
  (*reply)["spare"] = {{"id", slots->front().id.value()},
                       {"offset", slots->front().offset},
                       {"object", table_.ReserveId(client).value()}};
}

// ------------------------------------------------------------------- names

void Store::ResolveNames(std::vector<std::string> names,
                         MetaStore::Callback<std::vector<ObjectID>> done) {
  struct Gather {
    std::vector<ObjectID> ids;
    std::vector<Status> errors;
    MetaStore::Callback<std::vector<ObjectID>> done;
  };
  size_t n = names.size();
  auto gather = std::make_shared<Gather>(Gather{
      std::vector<ObjectID>(n), std::vector<Status>(n), std::move(done)});
  auto join = JoinStatuses(n, [gather](Status) {
    for (Status& st : gather->errors) {
      if (!st.ok()) return gather->done(std::move(st));  // the first in order
    }
    gather->done(std::move(gather->ids));
  });
  for (size_t i = 0; i < n; ++i) {
    meta_->GetName(names[i], [gather, join, i](Result<ObjectID> id) {
      if (id.ok()) {
        gather->ids[i] = *id;
      } else {
        gather->errors[i] = id.status();
      }
      join(Status::OK());
    });
  }
}

Status Store::CheckNameable(ObjectID id) const {
  const ObjectEntry* e = table_.Find(id);
  if (!e) {
    return Status::ObjectNotFound("object " + id.ToString() + " not found");
  }
  if (e->state != ObjectState::kSealed) {
    return Status::NotSealed("object " + id.ToString() +
                             " is not sealed and cannot be named");
  }
  return Status::OK();
}

Status Store::PutName(ClientId client, json& body, Done& done) {
  TRELLIS_ASSIGN_OR_RAISE(std::string name, GetString(body, "name"));
  TRELLIS_ASSIGN_OR_RAISE(ObjectID id, GetId(body, "id"));
  TRELLIS_ASSIGN_OR_RAISE(bool overwrite, GetBool(body, "overwrite", true));
  name_locks_.Acquire(name, [this, client, name, id, overwrite,
                             done = ForClient(client, std::move(done))] {
    if (!table_.Find(id)) {  // perhaps a global object
      return PutNameOfGlobal(client, name, id, overwrite, done);
    }
    BindLockedName(client, name, id, overwrite, CheckNameable(id), done);
  });
  return Status::OK();
}

void Store::BindLockedName(ClientId client, const std::string& name,
                           ObjectID id, bool overwrite, Status nameable,
                           Done done) {
  if (!nameable.ok() || !table_.HasClient(client)) {  // gone: no reply
    done(EmptyReply(nameable));
    name_locks_.Release(name);
    return;
  }
  meta_->PutName(name, id, overwrite, [this, name, done](Status st) {
    done(EmptyReply(st));
    name_locks_.Release(name);
  });
}

Status Store::GetName(ClientId client, json& body, Done& done) {
  TRELLIS_ASSIGN_OR_RAISE(std::string name, GetString(body, "name"));
  TRELLIS_ASSIGN_OR_RAISE(bool wait, GetBool(body, "wait", false));
  TRELLIS_ASSIGN_OR_RAISE(std::chrono::milliseconds timeout,
                          GetMilliseconds(body, "timeout_ms"));
  if (!wait) {
    meta_->GetName(name, [done = ForClient(client, std::move(done))](
                             Result<ObjectID> id) { done(IdReply(id)); });
    return Status::OK();
  }
  // Wait first, then look: a binding that the MetaStore reports between the
  // two is not missed. Waiters are dropped when their client disconnects.
  uint64_t waiter = waiters_.Add(
      client, name, timeout,
      [done = std::move(done)](Result<ObjectID> id) { done(IdReply(id)); });
  meta_->GetName(name, [this, waiter](Result<ObjectID> id) {
    if (!id.ok() && id.status().IsObjectNotFound()) return;  // keep waiting
    waiters_.Answer(waiter, std::move(id));
  });
  return Status::OK();
}

Status Store::DropName(ClientId client, json& body, Done& done) {
  TRELLIS_ASSIGN_OR_RAISE(std::string name, GetString(body, "name"));
  meta_->DropName(name, EmptyReplyTo(ForClient(client, std::move(done))));
  return Status::OK();
}

Status Store::ListNames(ClientId client, json& body, Done& done) {
  TRELLIS_ASSIGN_OR_RAISE(ListRequest list, ParseList(body));
  meta_->ListNames(
      list.pattern, list.limit,
      [done = ForClient(client, std::move(done))](
          Result<MetaStore::NameList> bound) {
        if (!bound.ok()) return done(bound.status());
        json names = json::array(), ids = json::array();
        for (const auto& [name, id] : *bound) {
          names.push_back(name);
          ids.push_back(id.value());
        }
        done(json{{"names", std::move(names)}, {"ids", std::move(ids)}});
      });
  return Status::OK();
}

Status Store::ClusterInfo(ClientId client, json&, Done& done) {
  meta_->ListInstances([this, done = ForClient(client, std::move(done))](
                           Result<std::vector<InstanceInfo>> instances) {
    if (!instances.ok()) return done(instances.status());
    json members = json::array();
    for (const InstanceInfo& i : *instances) {
      members.push_back({{"instance_id", i.instance_id},
                         {"hostname", i.hostname},
                         {"ipc_socket", i.ipc_socket},
                         {"rpc_endpoint", i.rpc_endpoint},
                         {"arena_size", i.arena_size},
                         {"arena_used", i.arena_used}});
    }
    done(json{{"cluster", meta_->cluster_name()},
              {"backend", meta_->backend()},
              {"instance_id", table_.instance_id()},
              {"members", std::move(members)}});
  });
  return Status::OK();
}

// ------------------------------------------------------- deletes and persists

Status Store::Delete(ClientId client, json& body, Done& done) {
  TRELLIS_ASSIGN_OR_RAISE(std::vector<ObjectID> ids, GetIds(body, "ids"));
  TRELLIS_ASSIGN_OR_RAISE(bool deep, GetBool(body, "deep", true));
  TRELLIS_ASSIGN_OR_RAISE(bool force, GetBool(body, "force", false));
  std::vector<ObjectID> absent;  // from the table: global objects?
  for (ObjectID id : ids) {
    if (!table_.Find(id)) absent.push_back(id);
  }
  done = ForClient(client, std::move(done));
  if (absent.empty()) {
    DeleteObjects(std::move(ids), {}, deep, force, std::move(done));
    return Status::OK();
  }
  LookUpGlobals(absent,
                [this, ids = std::move(ids), deep, force,
                 done = std::move(done)](Result<GlobalTrees> globals) mutable {
                  if (!globals.ok()) return done(globals.status());
                  std::vector<ObjectID> here, global;
                  for (ObjectID id : ids)
                    (globals->count(id) ? global : here).push_back(id);
                  DeleteObjects(std::move(here), std::move(global), deep, force,
                                std::move(done));
                });
  return Status::OK();
}

void Store::DeleteObjects(std::vector<ObjectID> here,
                          std::vector<ObjectID> globals, bool deep, bool force,
                          Done done) {
  std::vector<ObjectID> deleted;
  if (!here.empty() || globals.empty()) {
    auto in_table = table_.Delete(here, deep, force);
    if (!in_table.ok()) return done(in_table.status());  // nothing deleted
    deleted = std::move(*in_table);
  }
  size_t local = deleted.size();
  deleted.insert(deleted.end(), globals.begin(), globals.end());
  // The reply waits for the names to be dropped, so that the client's next
  // request sees them gone. If the MetaStore fails, the objects are deleted
  // all the same; the error says that names may remain.
  auto join = JoinStatuses(
      2 * deleted.size(), [deleted, done = std::move(done)](Status st) {
        if (!st.ok()) {
          return done(
              Status(st.code(), "deleted " + std::to_string(deleted.size()) +
                                    " object(s), but their names or published "
                                    "trees may remain: " +
                                    st.message()));
        }
        done(json{{"deleted", IdsToJson(deleted)}});
      });
  for (size_t i = 0; i < deleted.size(); ++i) {
    meta_->DropNamesOf(deleted[i], join);
    if (i < local) {
      meta_->Unpublish(deleted[i], join);
    } else {
      meta_->UnpublishGlobal(deleted[i], join);
    }
  }
}

Status Store::Persist(ClientId client, json& body, Done& done) {
  TRELLIS_ASSIGN_OR_RAISE(ObjectID id, GetId(body, "id"));
  TRELLIS_RETURN_NOT_OK(table_.Persist(id));
  TRELLIS_ASSIGN_OR_RAISE(json tree, table_.GetTree(0, id, nullptr));
  meta_->Publish(id, tree, EmptyReplyTo(ForClient(client, std::move(done))));
  return Status::OK();
}

}  // namespace trellis::server
