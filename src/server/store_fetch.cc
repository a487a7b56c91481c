// The Store's part of objects that live on other instances of the cluster:
// telling a reader where such an object is, and with GetMeta {fetch: true}
// copying it here (a replica under the same ids, made by a PeerFetcher).
// docs/protocol.md, "Fetching", has the contract.
#include <spdlog/spdlog.h>

#include <chrono>
#include <unordered_set>

#include "common/tree_format.h"
#include "server/callbacks.h"
#include "server/request_body.h"
#include "server/store.h"
#include "trellis/object.h"

namespace trellis::server {

using protocol::GetIds;

namespace {

// Transfers of at least this many bytes are logged when they start and end.
constexpr uint64_t kLoggedFetchBytes = 64u << 20;

// The distinct blobs (id, size) of a tree gotten from a peer, in first-visit
// order. Invalid if a blob node lacks its id or size; the rest of the
// tree's shape is CreateReplica's to check.
Status CollectBlobs(const json& node, std::unordered_set<ObjectID>* seen,
                    std::vector<std::pair<ObjectID, uint64_t>>* blobs) {
  if (!node.is_object()) return Status::Invalid("tree node must be a map");
  auto type = node.find(std::string(format::kTypeNameKey));
  if (type != node.end() && *type == kBlobTypeName) {
    uint64_t id = 0, size = 0;
    auto id_it = node.find(std::string(format::kIdKey));
    auto size_it = node.find("nbytes");
    if (id_it == node.end() || !protocol::AsUint(*id_it, &id) || id == 0 ||
        size_it == node.end() || !protocol::AsUint(*size_it, &size)) {
      return Status::Invalid("a blob node needs a non-zero 'id' and 'nbytes'");
    }
    if (seen->insert(ObjectID(id)).second)
      blobs->emplace_back(ObjectID(id), size);
    return Status::OK();
  }
  auto members = node.find(std::string(format::kMembersKey));
  if (members == node.end()) return Status::OK();
  if (!members->is_object()) return Status::Invalid("'members' must be a map");
  for (const auto& [name, member] : members->items()) {
    TRELLIS_RETURN_NOT_OK(CollectBlobs(member, seen, blobs));
  }
  return Status::OK();
}

std::string Where(const InstanceInfo& member) {
  return "instance " + std::to_string(member.instance_id) + " (host " +
         member.hostname +
         (member.rpc_endpoint.empty() ? ", no RPC endpoint"
                                      : ", RPC " + member.rpc_endpoint) +
         ")";
}

}  // namespace

void Store::GetTrees(ClientId client, std::vector<ObjectID> ids, bool relocate,
                     bool fetch, Done done) {
  std::vector<ObjectID> absent;  // from the table: global objects?
  bool made_elsewhere = false;   // then the member list is needed too
  for (ObjectID id : ids) {
    if (table_.Find(id)) continue;
    absent.push_back(id);
    made_elsewhere |= id.instance_id() != table_.instance_id();
  }
  if (absent.empty()) {
    return ServeTrees(client, std::move(ids), relocate, std::move(done));
  }
  // Both lookups at once: with etcd, each is a round trip.
  struct Lookups {
    Result<GlobalTrees> globals = GlobalTrees();
    MemberList members;
  };
  auto found = std::make_shared<Lookups>();
  auto join = JoinStatuses(
      made_elsewhere ? 2 : 1,
      [this, client, ids = std::move(ids), relocate, fetch, found,
       done = ForClient(client, std::move(done))](Status) mutable {
        if (!found->globals.ok()) return done(found->globals.status());
        if (found->globals->empty()) {
          return GetLocalOrRemoteTrees(client, std::move(ids), relocate, fetch,
                                       found->members, std::move(done));
        }
        ServeWithGlobals(client, std::move(ids), std::move(*found->globals),
                         relocate, fetch, found->members, std::move(done));
      });
  LookUpGlobals(absent, [found, join](Result<GlobalTrees> globals) {
    found->globals = std::move(globals);
    join(Status::OK());
  });
  if (made_elsewhere) {
    meta_->ListInstances(
        [found, join](Result<std::vector<InstanceInfo>> members) {
          found->members = std::make_shared<Result<std::vector<InstanceInfo>>>(
              std::move(members));
          join(Status::OK());
        });
  }
}

void Store::GetLocalOrRemoteTrees(ClientId client, std::vector<ObjectID> ids,
                                  bool relocate, bool fetch, MemberList members,
                                  Done done) {
  std::vector<ObjectID> elsewhere;
  for (ObjectID id : ids) {
    if (!table_.Find(id) && id.instance_id() != table_.instance_id()) {
      elsewhere.push_back(id);
    }
  }
  if (elsewhere.empty()) {
    return ServeTrees(client, std::move(ids), relocate, std::move(done));
  }
  done = ForClient(client, std::move(done));
  BringHere(std::move(elsewhere), fetch, std::move(members),
            [this, client, ids = std::move(ids), relocate,
             done = std::move(done)](Status st) mutable {
              if (!st.ok()) return done(st);
              ServeTrees(client, std::move(ids), relocate, std::move(done));
            });
}

void Store::BringHere(std::vector<ObjectID> ids, bool fetch, MemberList members,
                      std::function<void(Status)> done) {
  if (!members->ok()) {
    return done(Status(members->status().code(),
                       "cannot look up which instance holds " +
                           ids[0].ToString() + ": " +
                           members->status().message()));
  }
  auto join = JoinStatuses(ids.size(), std::move(done));
  for (ObjectID id : ids) {
    const InstanceInfo* owner = nullptr;
    for (const InstanceInfo& m : **members) {
      if (m.instance_id == id.instance_id()) owner = &m;
    }
    if (!owner) {
      std::string cluster = meta_->cluster_name();
      join(Status::ObjectNotFound(
          "object " + id.ToString() + " is unavailable: it was made by " +
          "instance " + std::to_string(id.instance_id()) + ", which " +
          (cluster.empty() ? "is not this daemon (it runs alone, on the " +
                                 meta_->backend() + " metadata backend)"
                           : "is not a member of cluster '" + cluster +
                                 "' now (it stopped or died)")));
    } else if (!fetch) {
      join(Status::ObjectNotFound("object " + id.ToString() + " lives on " +
                                  Where(*owner) +
                                  ", not here; get it with fetch=True to "
                                  "copy it here"));
    } else if (owner->rpc_endpoint.empty()) {
      join(Status::Disconnected("object " + id.ToString() + " lives on " +
                                Where(*owner) +
                                ", which serves no RPC (trellisd --rpc), so "
                                "it cannot be fetched"));
    } else {
      FetchObject(id, owner->rpc_endpoint, join);
    }
  }
}

void Store::FetchObject(ObjectID id, const std::string& endpoint,
                        std::function<void(Status)> done) {
  auto running = fetching_.find(id);
  if (running != fetching_.end()) {  // one transfer for every reader
    running->second.waiters.push_back(std::move(done));
    fetch_counters_.joined++;
    return;
  }
  if (!fetcher_) {
    return done(Status::NotImplemented("this daemon cannot fetch objects"));
  }
  Fetching& f = fetching_[id];
  f.client = Connect();  // owns the replica's blobs until they are sealed
  f.endpoint = endpoint;
  f.waiters.push_back(std::move(done));
  fetcher_->Fetch(
      endpoint, id,
      [this, id](const json& tree, PeerFetcher::PlanReply reply) {
        PlanCopies(id, tree, std::move(reply));
      },
      [this, id](Result<json> tree) { FinishFetch(id, std::move(tree)); });
}

void Store::PlanCopies(ObjectID id, const json& tree,
                       PeerFetcher::PlanReply reply) {
  std::unordered_set<ObjectID> seen;
  std::vector<std::pair<ObjectID, uint64_t>> all, missing;
  Status st = CollectBlobs(tree, &seen, &all);
  if (!st.ok()) return reply(st);
  std::vector<uint64_t> sizes;
  for (const auto& blob : all) {
    const ObjectEntry* here = table_.Find(blob.first);
    if (here && here->state == ObjectState::kSealed) continue;  // shared
    missing.push_back(blob);
    sizes.push_back(blob.second);
  }
  Fetching& f = fetching_.at(id);
  f.started = std::chrono::steady_clock::now();
  for (uint64_t size : sizes) f.bytes += size;
  if (f.bytes >= kLoggedFetchBytes) {
    spdlog::info("fetching {}: {} bytes in {} blob(s) from {}", id.ToString(),
                 f.bytes, missing.size(), f.endpoint);
  }
  ClientId client = f.client;
  MemoryNeed need = MemoryNeed::Of(sizes);
  if (need.total > allocator_.capacity()) {
    return reply(
        memory_.OutOfMemory(need.total, "the object is larger than the arena"));
  }
  auto shared_reply =
      std::make_shared<PeerFetcher::PlanReply>(std::move(reply));
  memory_.WithMemory(
      need,
      [this, client, missing = std::move(missing), shared_reply] {
        auto slots = table_.CreateReplicaBlobs(client, missing);
        if (!slots.ok()) {
          if (slots.status().IsOutOfMemory()) return false;
          (*shared_reply)(slots.status());
          return true;
        }
        std::vector<BlobCopy> copies;
        for (const BlobSlot& s : *slots) {
          copies.push_back({s.id, s.size, arena_->base() + s.offset});
        }
        (*shared_reply)(std::move(copies));
        return true;
      },
      [shared_reply](Status st) { (*shared_reply)(st); });
}

void Store::FinishFetch(ObjectID id, Result<json> tree) {
  auto it = fetching_.find(id);
  Fetching f = std::move(it->second);
  fetching_.erase(it);
  Status st = tree.status();
  if (st.ok()) {
    Result<ObjectID> made = table_.CreateReplica(f.client, *tree);
    if (made.ok() && *made != id) {
      st = Status::Invalid("the peer at " + f.endpoint + " sent the tree of " +
                           made->ToString() + " for " + id.ToString());
      (void)table_.Delete({*made}, true, true);
    } else if (!made.ok()) {
      st = Status(made.status().code(),
                  "the tree of " + id.ToString() + " from " + f.endpoint +
                      " is unusable: " + made.status().message());
    }
  }
  // Aborts the blobs a failed fetch allocated: no partial object remains.
  table_.RemoveClient(f.client);
  if (st.ok()) {
    fetch_counters_.fetches++;
    fetch_counters_.bytes += f.bytes;
  } else {
    fetch_counters_.failures++;
  }
  if (f.bytes >= kLoggedFetchBytes) {
    double seconds = std::chrono::duration<double>(
                         std::chrono::steady_clock::now() - f.started)
                         .count();
    if (st.ok()) {
      spdlog::info("fetched {}: {} bytes in {:.3f} s ({:.0f} MB/s)",
                   id.ToString(), f.bytes, seconds, f.bytes / seconds / 1e6);
    } else {
      spdlog::warn("fetch of {} failed: {}", id.ToString(), st.ToString());
    }
  }
  for (auto& waiter : f.waiters) waiter(st);
}

// ------------------------------------------------------------------ Locate

Status Store::Locate(ClientId client, json& body, Done& done) {
  if (!body.contains("names")) {
    TRELLIS_ASSIGN_OR_RAISE(std::vector<ObjectID> ids, GetIds(body, "ids"));
    LocateIds(client, std::move(ids), std::move(done));
    return Status::OK();
  }
  if (body.contains("ids")) {
    return Status::Invalid("Locate takes 'ids' or 'names', not both");
  }
  TRELLIS_ASSIGN_OR_RAISE(std::vector<std::string> names,
                          GetStrings(body, "names"));
  ResolveNames(std::move(names),
               [this, client, done = ForClient(client, std::move(done))](
                   Result<std::vector<ObjectID>> ids) {
                 if (!ids.ok()) return done(ids.status());
                 LocateIds(client, std::move(*ids), done);
               });
  return Status::OK();
}

std::optional<json> Store::LocateHere(ObjectID id) const {
  const ObjectEntry* entry = table_.Find(id);
  if (!entry || entry->state != ObjectState::kSealed) return std::nullopt;
  return json{{std::string(format::kIdKey), id.value()},
              {std::string(format::kTypeNameKey), entry->type_name},
              {std::string(format::kNbytesKey), entry->nbytes},
              {std::string(format::kInstanceIdKey), id.instance_id()},
              {"here", true}};
}

void Store::LocateIds(ClientId client, std::vector<ObjectID> ids, Done done) {
  struct Gather {
    json objects;
    Status error;
  };
  auto gather = std::make_shared<Gather>();
  gather->objects = json::array();
  std::vector<size_t> absent;  // positions of ids not sealed here
  for (size_t i = 0; i < ids.size(); ++i) {
    std::optional<json> here = LocateHere(ids[i]);
    gather->objects.push_back(here ? std::move(*here) : json());
    if (!here) absent.push_back(i);
  }
  done = ForClient(client, std::move(done));
  auto join = JoinStatuses(absent.size(), [gather, done](Status) {
    if (!gather->error.ok()) return done(gather->error);
    done(json{{"objects", std::move(gather->objects)}});
  });
  for (size_t i : absent) {
    ObjectID id = ids[i];
    meta_->GetPublished(id, [this, gather, join, id, i](Result<json> tree) {
      json& out = gather->objects[i];
      if (tree.ok() && tree->is_object()) {
        // A published tree: its root says where it was made and how big it
        // is; a global object's members say the same of each chunk.
        out = json{{std::string(format::kIdKey), id.value()},
                   {std::string(format::kTypeNameKey),
                    tree->value(std::string(format::kTypeNameKey), "")},
                   {std::string(format::kNbytesKey),
                    tree->value(std::string(format::kNbytesKey), 0)},
                   {std::string(format::kInstanceIdKey),
                    tree->value(std::string(format::kInstanceIdKey),
                                id.instance_id())},
                   {"here", false}};
        if (IsGlobalTree(*tree)) {
          out["global"] = true;
          json chunks = json::array();
          auto members = tree->find(std::string(format::kMembersKey));
          if (members != tree->end() && members->is_object()) {
            for (const auto& [key, stub] : members->items()) {
              uint64_t chunk = 0;
              auto chunk_id = stub.find(std::string(format::kIdKey));
              if (chunk_id == stub.end() ||
                  !protocol::AsUint(*chunk_id, &chunk))
                continue;
              std::optional<json> here = LocateHere(ObjectID(chunk));
              json entry = stub;
              entry.erase(std::string(format::kFieldsKey));
              entry["member"] = key;
              entry["here"] = here.has_value();
              chunks.push_back(std::move(entry));
            }
          }
          out["chunks"] = std::move(chunks);
        }
      } else if (tree.ok() || tree.status().IsObjectNotFound()) {
        if (id.instance_id() == table_.instance_id()) {
          if (gather->error.ok()) {
            gather->error = Status::ObjectNotFound("object " + id.ToString() +
                                                   " not found");
          }
        } else {
          // Made elsewhere and not persisted: its instance is known from the
          // id, its size only to that instance.
          out = json{{std::string(format::kIdKey), id.value()},
                     {std::string(format::kInstanceIdKey), id.instance_id()},
                     {"here", false}};
        }
      } else if (gather->error.ok()) {
        gather->error = Status(tree.status().code(),
                               "cannot look up where object " + id.ToString() +
                                   " lives: " + tree.status().message());
      }
      join(Status::OK());
    });
  }
}

}  // namespace trellis::server
