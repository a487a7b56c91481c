// The Store's part of global objects: objects whose members are objects of
// any instance of the cluster (the chunks of a GlobalDataFrame, ...). A
// global object has no blobs and no entry in any object table: its tree,
// published in the MetaStore, is the object. docs/format.md ("Global
// objects") has the layout, docs/protocol.md the requests that take them.
#include "common/protocol.h"
#include "common/tree_format.h"
#include "server/callbacks.h"
#include "server/request_body.h"
#include "server/store.h"
#include "trellis/object.h"

namespace trellis::server {
namespace {

// The part of a member's tree a global object keeps: no members, so no
// blobs (their offsets mean nothing on another instance).
json Stub(const json& tree) {
  json stub = json::object();
  for (const char* key : {"typename", "id", "nbytes", "instance_id"}) {
    auto it = tree.find(key);
    if (it != tree.end()) stub[key] = *it;
  }
  auto fields = tree.find(std::string(format::kFieldsKey));
  if (fields != tree.end()) stub[std::string(format::kFieldsKey)] = *fields;
  return stub;
}

// The type name of a global object made without one: after its members'
// common type.
std::string GlobalTypeName(const json& members) {
  std::string common;
  for (const auto& [name, stub] : members.items()) {
    std::string type = stub.value("typename", "");
    if (!common.empty() && type != common) return "trellis::GlobalObject";
    common = type;
  }
  if (common == format::kDataFrame) return "trellis::GlobalDataFrame";
  if (common == format::kTensor) return "trellis::GlobalTensor";
  return "trellis::GlobalObject";
}

}  // namespace

bool IsGlobalTree(const json& tree) {
  auto it = tree.find(format::kGlobalKey);
  return it != tree.end() && it->is_boolean() && it->get<bool>();
}

// One global CreateObject: the members' stubs are gathered (local ones
// persisted on the way), then the tree is published and the name bound.
struct Store::GlobalBuild {
  std::shared_ptr<CreateCall> call;
  json root;                                            // the tree to publish
  std::vector<std::pair<std::string, ObjectID>> order;  // members
  std::vector<json> stubs;                              // by position
};

Status Store::BuildGlobal(std::shared_ptr<CreateCall> call) {
  const json& tree = call->tree;
  auto type = tree.find(std::string(format::kTypeNameKey));
  std::string type_name;  // empty: named after its members in PublishGlobal
  if (type != tree.end()) {
    if (!type->is_string() || type->get_ref<const std::string&>().empty() ||
        *type == kBlobTypeName) {
      return Status::Invalid(
          "the 'typename' of a global object must be a non-empty string");
    }
    type_name = *type;
  }
  auto build = std::make_shared<GlobalBuild>();
  build->call = call;
  build->root = {{"typename", type_name},
                 {std::string(format::kGlobalKey), true}};
  auto fields = tree.find(std::string(format::kFieldsKey));
  if (fields != tree.end()) {
    if (!fields->is_object()) {
      return Status::Invalid("'fields' of a global object must be a map");
    }
    build->root[std::string(format::kFieldsKey)] = *fields;
  }
  auto members = tree.find(std::string(format::kMembersKey));
  if (members == tree.end() || !members->is_object() || members->empty()) {
    return Status::Invalid(
        "a global object needs 'members': a map of references {\"id\": ...} "
        "to the objects it is made of");
  }
  for (const auto& [name, ref] : members->items()) {
    uint64_t id = 0;
    auto id_it = ref.is_object() ? ref.find("id") : ref.end();
    if (!ref.is_object() || id_it == ref.end() ||
        !protocol::AsUint(*id_it, &id) || id == 0 || ref.size() != 1) {
      return Status::Invalid("member '" + name +
                             "' of a global object must be a reference "
                             "{\"id\": ...} to an existing object");
    }
    build->order.emplace_back(name, ObjectID(id));
  }
  build->stubs.resize(build->order.size());
  call->tree = nullptr;  // everything needed is in `build`

  auto join = JoinStatuses(build->order.size(), [this, build](Status st) {
    if (!st.ok()) return FinishCreate(build->call, st);
    PublishGlobal(build);
  });
  for (size_t i = 0; i < build->order.size(); ++i) {
    StubMember(build, i, join);
  }
  return Status::OK();
}

void Store::StubMember(std::shared_ptr<GlobalBuild> build, size_t i,
                       std::function<void(Status)> done) {
  const auto& [name, id] = build->order[i];
  auto fail = [name = name, id = id](const Status& st) {
    return Status(st.code(), "member '" + name + "' (" + id.ToString() +
                                 ") of the global object: " + st.message());
  };
  const ObjectEntry* e = table_.Find(id);
  // Made here: persisted now, so that every instance can see it. (A replica
  // fetched from elsewhere is described by its original's published tree.)
  if (e && id.instance_id() == table_.instance_id()) {
    if (e->is_blob) {
      return done(fail(Status::Invalid("is a blob; members are objects")));
    }
    if (e->state != ObjectState::kSealed) {
      return done(fail(Status::NotSealed("is not sealed")));
    }
    auto tree = table_.GetTree(0, id, nullptr);
    if (!tree.ok()) return done(fail(tree.status()));
    build->stubs[i] = Stub(*tree);
    if (e->persisted) return done(Status::OK());
    Status persisted = table_.Persist(id);
    if (!persisted.ok()) return done(fail(persisted));
    return meta_->Publish(
        id, *tree, [fail, done](Status st) { done(st.ok() ? st : fail(st)); });
  }
  meta_->GetPublished(id, [this, build, i, id = id, fail,
                           done](Result<json> tree) {
    if (!tree.ok()) {
      if (!tree.status().IsObjectNotFound()) return done(fail(tree.status()));
      return done(fail(Status::ObjectNotFound(
          "is not a persisted object of instance " +
          std::to_string(id.instance_id()) +
          ": persist it where it was made (put(..., persist=True)) to make "
          "it part of a global object")));
    }
    if (IsGlobalTree(*tree)) {
      return done(fail(Status::Invalid(
          "is itself a global object; members are objects of one instance")));
    }
    build->stubs[i] = Stub(*tree);
    done(Status::OK());
  });
}

void Store::PublishGlobal(std::shared_ptr<GlobalBuild> build) {
  uint64_t nbytes = 0;
  json members = json::object();
  for (size_t i = 0; i < build->order.size(); ++i) {
    uint64_t n = 0;
    auto it = build->stubs[i].find("nbytes");
    if (it != build->stubs[i].end() && protocol::AsUint(*it, &n)) nbytes += n;
    members[build->order[i].first] = std::move(build->stubs[i]);
  }
  if (build->root["typename"] == "") {
    build->root["typename"] = GlobalTypeName(members);
  }
  ObjectID id = table_.IssueId();
  build->call->id = id;
  build->root["id"] = id.value();
  build->root["nbytes"] = nbytes;
  build->root["instance_id"] = table_.instance_id();
  build->root[std::string(format::kMembersKey)] = std::move(members);
  meta_->Publish(id, build->root, [this, build](Status st) {
    if (!st.ok()) return FinishCreate(build->call, st);
    BindCreated(build->call);
  });
}

void Store::LookUpGlobals(const std::vector<ObjectID>& ids,
                          std::function<void(Result<GlobalTrees>)> done) {
  struct Gather {
    GlobalTrees found;
    Status error;
  };
  auto gather = std::make_shared<Gather>();
  auto join = JoinStatuses(ids.size(), [gather, done](Status) {
    if (!gather->error.ok()) return done(gather->error);
    done(std::move(gather->found));
  });
  for (ObjectID id : ids) {
    meta_->GetPublished(id, [gather, join, id](Result<json> tree) {
      if (tree.ok() && IsGlobalTree(*tree)) {
        gather->found.emplace(id, std::move(*tree));
      } else if (!tree.ok() && !tree.status().IsObjectNotFound() &&
                 gather->error.ok()) {
        gather->error = Status(tree.status().code(),
                               "object " + id.ToString() +
                                   " is not here, and whether it is a global "
                                   "object cannot be checked: " +
                                   tree.status().message());
      }
      join(Status::OK());
    });
  }
}

void Store::ServeWithGlobals(ClientId client, std::vector<ObjectID> ids,
                             GlobalTrees globals, bool relocate, bool fetch,
                             MemberList members, Done done) {
  std::vector<ObjectID> rest;
  for (ObjectID id : ids) {
    if (!globals.count(id)) rest.push_back(id);
  }
  // {trees, held} in the order asked: the global trees hold nothing.
  auto reply = [ids, globals = std::move(globals),
                done](Result<json> others) mutable {
    if (!others.ok()) return done(others.status());
    json trees = json::array(), held = json::array();
    if (others->is_object() || others->is_binary()) {
      auto dom = protocol::BodyDom(*others);
      if (!dom.ok()) return done(dom.status());
      trees = std::move((*dom)["trees"]);
      held = std::move((*dom)["held"]);
    }
    json out = json::array();
    size_t next_other = 0;
    for (ObjectID id : ids) {
      auto g = globals.find(id);
      out.push_back(g != globals.end() ? g->second
                                       : std::move(trees[next_other++]));
    }
    done(json{{"trees", std::move(out)}, {"held", std::move(held)}});
  };
  if (rest.empty()) return reply(json());
  GetLocalOrRemoteTrees(client, std::move(rest), relocate, fetch,
                        std::move(members), std::move(reply));
}

// ---------------------------------------------- names and deletes of globals

void Store::PutNameOfGlobal(ClientId client, std::string name, ObjectID id,
                            bool overwrite, Done done) {
  LookUpGlobals({id}, [this, client, name, id, overwrite,
                       done](Result<GlobalTrees> globals) {
    Status st = globals.ok() ? Status::OK() : globals.status();
    if (st.ok() && globals->empty()) st = CheckNameable(id);  // its error
    BindLockedName(client, name, id, overwrite, std::move(st), done);
  });
}

}  // namespace trellis::server
