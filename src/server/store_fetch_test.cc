// GetMeta of objects another instance made, and global objects, on the
// Store alone: two stores in one process (the origin, instance 7, and this
// one, instance 9) that see each other as members of one cluster (one
// metadata store for names and published trees), and a PeerFetcher that copies
// from the origin store directly, one step at a time when the test says
// so. What crosses a real network (the RPC fetcher, a peer killed
// mid-transfer) is tested against real daemons in python/tests/test_fetch.py.
#include <gtest/gtest.h>

#include <cstring>
#include <deque>
#include <optional>

#include "common/protocol.h"
#include "server/store.h"
#include "testing/fake_clock.h"
#include "testing/manual_executor.h"
#include "trellis/object.h"

namespace trellis::server {
namespace {

using protocol::MessageType;
using testing::FakeClock;
using testing::ManualExecutor;

constexpr uint16_t kOrigin = 7;
constexpr uint16_t kHere = 9;

bool Contains(const Status& st, const std::string& text) {
  return st.message().find(text) != std::string::npos;
}

json Decoded(const json& body) {
  if (!body.is_binary()) return body;
  const auto& bytes = body.get_binary();
  return protocol::DecodeBody(bytes.data(), bytes.size()).value();
}

// A view of one local backend shared by the stores of a test (names and
// published trees are cluster-wide), whose member list is whatever the test
// says.
class MembersMetaStore final : public MetaStore {
 public:
  explicit MembersMetaStore(std::shared_ptr<MetaStore> shared)
      : inner_(std::move(shared)) {}
  std::vector<InstanceInfo> members;

  std::string backend() const override { return "test"; }
  std::string cluster_name() const override { return "pair"; }
  void Register(InstanceInfo self, Callback<uint16_t> done) override {
    inner_->Register(self, std::move(done));
  }
  void PutName(const std::string& name, ObjectID id, bool overwrite,
               StatusCallback done) override {
    inner_->PutName(name, id, overwrite, std::move(done));
  }
  void GetName(const std::string& name, Callback<ObjectID> done) override {
    inner_->GetName(name, std::move(done));
  }
  void DropName(const std::string& name, StatusCallback done) override {
    inner_->DropName(name, std::move(done));
  }
  void ListNames(const std::string& pattern, size_t limit,
                 Callback<NameList> done) override {
    inner_->ListNames(pattern, limit, std::move(done));
  }
  void DropNamesOf(ObjectID id, StatusCallback done) override {
    inner_->DropNamesOf(id, std::move(done));
  }
  void Publish(ObjectID id, const json& tree, StatusCallback done) override {
    inner_->Publish(id, tree, std::move(done));
  }
  void Unpublish(ObjectID id, StatusCallback done) override {
    inner_->Unpublish(id, std::move(done));
  }
  void UnpublishGlobal(ObjectID id, StatusCallback done) override {
    inner_->UnpublishGlobal(id, std::move(done));
  }
  void GetPublished(ObjectID id, Callback<json> done) override {
    inner_->GetPublished(id, std::move(done));
  }
  void ListInstances(Callback<std::vector<InstanceInfo>> done) override {
    done(members);
  }

 private:
  std::shared_ptr<MetaStore> inner_;
};

// Copies from another Store of this process. Fetch only queues; Run carries
// the queued fetches out, each as the RPC fetcher would (tree, plan, bytes,
// release, done). With `fail_after` set, a transfer stops after that many
// bytes of its first blob, as when the peer dies.
class StoreFetcher final : public PeerFetcher {
 public:
  explicit StoreFetcher(Store* origin) : origin_(origin) {
    client_ = origin_->Connect();
  }
  int fetches = 0;
  std::optional<uint64_t> fail_after;

  void Fetch(const std::string& endpoint, ObjectID id, Plan plan,
             Done done) override {
    fetches++;
    queued_.push_back({endpoint, id, std::move(plan), std::move(done)});
  }

  void Run() {
    while (!queued_.empty()) {
      Job job = std::move(queued_.front());
      queued_.pop_front();
      std::optional<Result<json>> got;
      origin_->Handle(client_, static_cast<uint16_t>(MessageType::kGetMeta),
                      json{{"ids", {job.id.value()}}},
                      [&](Result<json> r) { got.emplace(std::move(r)); });
      if (!got->ok()) {
        job.done(got->status());
        continue;
      }
      json reply = Decoded(**got);
      json tree = reply["trees"][0];
      job.plan(tree, [&](Result<std::vector<BlobCopy>> copies) {
        Status st = copies.status();
        if (st.ok()) st = Copy(tree, *copies);
        origin_->Handle(client_, static_cast<uint16_t>(MessageType::kRelease),
                        json{{"ids", reply["held"]}}, [](Result<json>) {});
        if (!st.ok()) return job.done(st);
        job.done(tree);
      });
    }
  }

 private:
  struct Job {
    std::string endpoint;
    ObjectID id;
    Plan plan;
    Done done;
  };

  static void Offsets(const json& node, std::map<uint64_t, uint64_t>* out) {
    if (node["typename"] == kBlobTypeName) {
      (*out)[node["id"].get<uint64_t>()] = node.value("offset", uint64_t{0});
    }
    if (node.contains("members")) {
      for (const auto& [name, m] : node["members"].items()) Offsets(m, out);
    }
  }

  Status Copy(const json& tree, const std::vector<BlobCopy>& copies) {
    std::map<uint64_t, uint64_t> offsets;
    Offsets(tree, &offsets);
    for (const BlobCopy& c : copies) {
      const uint8_t* src = origin_->arena().base() + offsets.at(c.id.value());
      if (fail_after && c.size > *fail_after) {
        std::memcpy(c.dst, src, *fail_after);
        return Status::Disconnected("the peer closed the connection");
      }
      std::memcpy(c.dst, src, c.size);
    }
    return Status::OK();
  }

  Store* origin_;
  ClientId client_;
  std::deque<Job> queued_;
};

class StoreFetchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    origin_ = MakeStore(kOrigin, nullptr, &origin_meta_);
    fetcher_ = std::make_unique<StoreFetcher>(origin_.get());
    here_ = MakeStore(kHere, fetcher_.get(), &here_meta_);
    SetMembers({kOrigin, kHere});
    writer_ = origin_->Connect();
    reader_ = here_->Connect();
  }

  std::unique_ptr<Store> MakeStore(uint16_t instance, PeerFetcher* fetcher,
                                   MembersMetaStore** meta_out) {
    auto meta = std::make_unique<MembersMetaStore>(shared_meta_);
    *meta_out = meta.get();
    StoreOptions options;
    options.size = 1 << 20;
    options.instance_id = instance;
    StoreHooks hooks{&clock_, workers_.AsRunInBackground(), fetcher};
    auto store = Store::Create(options, std::move(meta), nullptr, "", hooks);
    EXPECT_TRUE(store.ok()) << store.status();
    return std::move(*store);
  }

  void SetMembers(std::vector<uint16_t> ids) {
    std::vector<InstanceInfo> members;
    for (uint16_t id : ids) {
      members.push_back({id, "host" + std::to_string(id), "",
                         "10.0.0." + std::to_string(id) + ":9000", 1 << 20, 0});
    }
    origin_meta_->members = here_meta_->members = members;
  }

  std::shared_ptr<std::optional<Result<json>>> Send(Store* store,
                                                    ClientId client,
                                                    MessageType type,
                                                    json body) {
    auto reply = std::make_shared<std::optional<Result<json>>>();
    store->Handle(client, static_cast<uint16_t>(type), body,
                  [reply](Result<json> r) {
                    ASSERT_FALSE(reply->has_value()) << "two replies";
                    reply->emplace(std::move(r));
                  });
    return reply;
  }

  json Ok(Store* store, ClientId client, MessageType type, json body) {
    auto reply = Send(store, client, type, std::move(body));
    EXPECT_TRUE(reply->has_value());
    if (!reply->has_value()) return json();
    EXPECT_TRUE((*reply)->ok()) << (*reply)->status();
    return (*reply)->ok() ? Decoded(***reply) : json();
  }

  // On the origin: a DataFrame-like object, {a: blob of 3000 bytes of 1,
  // b: blob of 200 of 2, inner: {a}}.
  ObjectID PutObject(bool persist = false) {
    json data = json::array({json::binary(std::vector<uint8_t>(3000, 1)),
                             json::binary(std::vector<uint8_t>(200, 2))});
    json blobs =
        Ok(origin_.get(), writer_, MessageType::kPutBlobs, {{"data", data}});
    uint64_t a = blobs["ids"][0], b = blobs["ids"][1];
    json tree = {
        {"typename", "test::Frame"},
        {"fields", {{"rows", 3}}},
        {"members",
         {{"a", {{"id", a}}},
          {"b", {{"id", b}}},
          {"inner",
           {{"typename", "test::Inner"}, {"members", {{"a", {{"id", a}}}}}}}}}};
    json made = Ok(origin_.get(), writer_, MessageType::kCreateObject,
                   {{"tree", tree}, {"name", "frame"}, {"persist", persist}});
    return ObjectID(made["id"].get<uint64_t>());
  }

  json Status(Store* store, ClientId client) {
    return Ok(store, client, MessageType::kStatus, json::object());
  }

  FakeClock clock_;
  ManualExecutor workers_;
  std::shared_ptr<MetaStore> shared_meta_ = MakeLocalMetaStore(kOrigin);
  MembersMetaStore* origin_meta_ = nullptr;
  MembersMetaStore* here_meta_ = nullptr;
  std::unique_ptr<Store> origin_;
  std::unique_ptr<StoreFetcher> fetcher_;
  std::unique_ptr<Store> here_;
  ClientId writer_ = 0, reader_ = 0;
};

TEST_F(StoreFetchTest, WithoutFetchTheErrorSaysWhereTheObjectLives) {
  ObjectID id = PutObject();
  auto reply = Send(here_.get(), reader_, MessageType::kGetMeta,
                    {{"ids", {id.value()}}});
  ASSERT_TRUE(reply->has_value());
  trellis::Status st = (*reply)->status();
  EXPECT_TRUE(st.IsObjectNotFound()) << st;
  EXPECT_TRUE(Contains(st, "instance 7 (host host7, RPC 10.0.0.7:9000)")) << st;
  EXPECT_TRUE(Contains(st, "fetch=True")) << st;
  EXPECT_EQ(fetcher_->fetches, 0);
  // An id of this instance that is not here is just not found.
  reply = Send(here_.get(), reader_, MessageType::kGetMeta,
               {{"ids", {ObjectID::Make(kHere, 99).value()}}});
  EXPECT_TRUE((*reply)->status().IsObjectNotFound());
  EXPECT_FALSE(Contains((*reply)->status(), "fetch"));
}

TEST_F(StoreFetchTest, FetchMakesAReplicaWithTheSameIdsAndBytes) {
  ObjectID id = PutObject();
  auto reply = Send(here_.get(), reader_, MessageType::kGetMeta,
                    {{"ids", {id.value()}}, {"fetch", true}});
  EXPECT_FALSE(reply->has_value());  // waiting for the transfer
  fetcher_->Run();
  ASSERT_TRUE(reply->has_value());
  ASSERT_TRUE((*reply)->ok()) << (*reply)->status();
  json got = Decoded(***reply);
  json tree = got["trees"][0];
  EXPECT_EQ(tree["id"], id.value());
  EXPECT_EQ(tree["instance_id"], kHere);  // served here
  EXPECT_EQ(tree["fields"]["rows"], 3);
  EXPECT_EQ(tree["nbytes"], 3200u);
  EXPECT_EQ(got["held"].size(), 2u);
  const uint8_t* a =
      here_->arena().base() + tree["members"]["a"]["offset"].get<uint64_t>();
  const uint8_t* b =
      here_->arena().base() + tree["members"]["b"]["offset"].get<uint64_t>();
  EXPECT_EQ(std::vector<uint8_t>(a, a + 3000), std::vector<uint8_t>(3000, 1));
  EXPECT_EQ(std::vector<uint8_t>(b, b + 200), std::vector<uint8_t>(200, 2));
  EXPECT_EQ(tree["members"]["inner"]["members"]["a"]["offset"],
            tree["members"]["a"]["offset"]);
  Send(here_.get(), reader_, MessageType::kRelease, {{"ids", got["held"]}});

  // Now it is here: a get without fetch, by id or by name, copies nothing.
  Ok(here_.get(), reader_, MessageType::kGetMeta, {{"ids", {id.value()}}});
  EXPECT_EQ(fetcher_->fetches, 1);
  json s = Status(here_.get(), reader_);
  EXPECT_EQ(s["fetch_count"], 1u);
  EXPECT_EQ(s["fetch_bytes_total"], 3200u);
  EXPECT_EQ(s["objects"], 2u);
  EXPECT_EQ(s["unsealed_blobs"], 0u);
  EXPECT_EQ(here_->arena_used(), 3008u + 256u);  // 64-byte aligned
  // The origin's holds were released.
  EXPECT_EQ(Status(origin_.get(), writer_)["held_bytes"], 0u);
}

TEST_F(StoreFetchTest, ConcurrentFetchesOfOneObjectTransferItOnce) {
  ObjectID id = PutObject();
  ClientId other = here_->Connect();
  std::vector<std::shared_ptr<std::optional<Result<json>>>> replies;
  for (ClientId c : {reader_, other, reader_}) {
    replies.push_back(Send(here_.get(), c, MessageType::kGetMeta,
                           {{"ids", {id.value()}}, {"fetch", true}}));
  }
  fetcher_->Run();
  for (auto& r : replies) {
    ASSERT_TRUE(r->has_value());
    EXPECT_TRUE((*r)->ok()) << (*r)->status();
  }
  EXPECT_EQ(fetcher_->fetches, 1);
  EXPECT_EQ(Status(here_.get(), reader_)["fetch_joined"], 2u);
  EXPECT_EQ(here_->arena_used(), 3008u + 256u);  // 64-byte aligned
}

TEST_F(StoreFetchTest, AFailedTransferLeavesNoPartialObject) {
  ObjectID id = PutObject();
  fetcher_->fail_after = 1000;
  auto reply = Send(here_.get(), reader_, MessageType::kGetMeta,
                    {{"ids", {id.value()}}, {"fetch", true}});
  auto joined = Send(here_.get(), reader_, MessageType::kGetMeta,
                     {{"ids", {id.value()}}, {"fetch", true}});
  fetcher_->Run();
  for (auto& r : {reply, joined}) {
    ASSERT_TRUE(r->has_value());
    EXPECT_TRUE((*r)->status().IsDisconnected()) << (*r)->status();
  }
  json s = Status(here_.get(), reader_);
  EXPECT_EQ(s["fetch_failures"], 1u);
  EXPECT_EQ(s["objects"], 0u);
  EXPECT_EQ(s["blobs"], 0u);
  EXPECT_EQ(s["unsealed_blobs"], 0u);
  EXPECT_EQ(here_->arena_used(), 0u);
  // The next try starts afresh and succeeds; by name too.
  fetcher_->fail_after.reset();
  reply = Send(here_.get(), reader_, MessageType::kGetMeta,
               {{"names", {"frame"}}, {"fetch", true}});
  fetcher_->Run();
  ASSERT_TRUE(reply->has_value());
  EXPECT_TRUE((*reply)->ok()) << (*reply)->status();
  EXPECT_EQ(fetcher_->fetches, 2);
}

TEST_F(StoreFetchTest, AnObjectOfAGoneInstanceIsUnavailable) {
  ObjectID id = PutObject();
  SetMembers({kHere});  // instance 7 dropped out of the member list
  auto reply = Send(here_.get(), reader_, MessageType::kGetMeta,
                    {{"ids", {id.value()}}, {"fetch", true}});
  ASSERT_TRUE(reply->has_value());
  trellis::Status st = (*reply)->status();
  EXPECT_TRUE(st.IsObjectNotFound()) << st;
  EXPECT_TRUE(Contains(st, "instance 7")) << st;
  EXPECT_TRUE(Contains(st, "not a member of cluster 'pair'")) << st;
  EXPECT_EQ(fetcher_->fetches, 0);
}

TEST_F(StoreFetchTest, AnObjectLargerThanTheArenaIsRefusedBeforeAnyCopy) {
  json data = json::array({json::binary(std::vector<uint8_t>(600 << 10, 3))});
  json blobs =
      Ok(origin_.get(), writer_, MessageType::kPutBlobs, {{"data", data}});
  ObjectID blob(blobs["ids"][0].get<uint64_t>());
  // Fill this arena so the 600 KiB cannot fit (nothing can be spilled).
  json local = json::array({json::binary(std::vector<uint8_t>(600 << 10, 4))});
  Ok(here_.get(), reader_, MessageType::kPutBlobs, {{"data", local}});
  auto reply = Send(here_.get(), reader_, MessageType::kGetMeta,
                    {{"ids", {blob.value()}}, {"fetch", true}});
  fetcher_->Run();
  ASSERT_TRUE(reply->has_value());
  EXPECT_TRUE((*reply)->status().IsOutOfMemory()) << (*reply)->status();
  EXPECT_EQ(Status(here_.get(), reader_)["blobs"], 1u);  // just its own
}

// ------------------------------------------------------------ global objects

class GlobalObjectTest : public StoreFetchTest {
 protected:
  // A sealed object of one blob on this instance (not persisted).
  ObjectID PutHere() {
    json data = json::array({json::binary(std::vector<uint8_t>(100, 5))});
    json blobs =
        Ok(here_.get(), reader_, MessageType::kPutBlobs, {{"data", data}});
    json tree = {{"typename", "test::Chunk"},
                 {"fields", {{"rows", 1}}},
                 {"members", {{"a", {{"id", blobs["ids"][0]}}}}}};
    json made =
        Ok(here_.get(), reader_, MessageType::kCreateObject, {{"tree", tree}});
    return ObjectID(made["id"].get<uint64_t>());
  }

  json GlobalTree(std::vector<std::pair<std::string, ObjectID>> members) {
    json refs = json::object();
    for (const auto& [name, id] : members) refs[name] = {{"id", id.value()}};
    return {{"typename", "test::GlobalFrame"},
            {"global", true},
            {"fields", {{"partitions", members.size()}}},
            {"members", refs}};
  }

  trellis::Status CreateError(json tree) {
    auto reply = Send(here_.get(), reader_, MessageType::kCreateObject,
                      {{"tree", std::move(tree)}, {"name", "g"}});
    EXPECT_TRUE(reply->has_value());
    return (*reply)->status();
  }

  bool Published(ObjectID id) {
    bool found = false;
    shared_meta_->GetPublished(id, [&](Result<json> t) { found = t.ok(); });
    return found;
  }
};

TEST_F(GlobalObjectTest, ChunksOfTwoInstancesAreOneObjectSeenFromEither) {
  ObjectID there = PutObject(/*persist=*/true);
  ObjectID here = PutHere();
  json made = Ok(here_.get(), reader_, MessageType::kCreateObject,
                 {{"tree", GlobalTree({{"chunk_0", there}, {"chunk_1", here}})},
                  {"name", "g"}});
  ObjectID global(made["id"].get<uint64_t>());
  EXPECT_EQ(global.instance_id(), kHere);
  EXPECT_TRUE(Published(here));  // its local member was persisted with it

  // From the other instance, by id and by name: the chunk list with where
  // each chunk is, no blobs, nothing held, nothing fetched.
  for (json body : {json{{"ids", {global.value()}}}, json{{"names", {"g"}}}}) {
    json got = Ok(origin_.get(), writer_, MessageType::kGetMeta, body);
    json tree = got["trees"][0];
    EXPECT_EQ(tree["global"], true);
    EXPECT_EQ(tree["typename"], "test::GlobalFrame");
    EXPECT_EQ(tree["id"], global.value());
    EXPECT_EQ(tree["instance_id"], kHere);
    EXPECT_EQ(tree["fields"]["partitions"], 2);
    EXPECT_EQ(tree["nbytes"], 3200u + 100u);
    json c0 = tree["members"]["chunk_0"], c1 = tree["members"]["chunk_1"];
    EXPECT_EQ(c0["id"], there.value());
    EXPECT_EQ(c0["instance_id"], kOrigin);
    EXPECT_EQ(c0["typename"], "test::Frame");
    EXPECT_EQ(c0["fields"]["rows"], 3);
    EXPECT_FALSE(c0.contains("members"));
    EXPECT_EQ(c1["id"], here.value());
    EXPECT_EQ(c1["instance_id"], kHere);
    EXPECT_EQ(c1["nbytes"], 100u);
    EXPECT_TRUE(got["held"].empty());
  }
  EXPECT_EQ(fetcher_->fetches, 0);

  // With other objects in one GetMeta: trees in the order asked, holds for
  // the local one only.
  json mixed = Ok(origin_.get(), writer_, MessageType::kGetMeta,
                  {{"ids", {there.value(), global.value(), there.value()}}});
  ASSERT_EQ(mixed["trees"].size(), 3u);
  EXPECT_EQ(mixed["trees"][0]["id"], there.value());
  EXPECT_EQ(mixed["trees"][1]["id"], global.value());
  EXPECT_EQ(mixed["trees"][2]["id"], there.value());
  EXPECT_EQ(mixed["held"].size(), 4u);  // two blobs, twice
  Send(origin_.get(), writer_, MessageType::kRelease, {{"ids", mixed["held"]}});
}

TEST_F(GlobalObjectTest, NamedAndDeletedFromAnyInstanceKeepingItsChunks) {
  ObjectID there = PutObject(/*persist=*/true);
  json untyped = GlobalTree({{"chunk_0", there}});
  untyped.erase("typename");  // named after its members' common type
  json made =
      Ok(here_.get(), reader_, MessageType::kCreateObject, {{"tree", untyped}});
  ObjectID global(made["id"].get<uint64_t>());
  json tree = Ok(origin_.get(), writer_, MessageType::kGetMeta,
                 {{"ids", {global.value()}}})["trees"][0];
  EXPECT_EQ(tree["typename"], "trellis::GlobalObject");
  Ok(origin_.get(), writer_, MessageType::kPutName,
     {{"name", "g2"}, {"id", global.value()}});
  json bound =
      Ok(here_.get(), reader_, MessageType::kGetName, {{"name", "g2"}});
  EXPECT_EQ(bound["id"], global.value());

  json deleted = Ok(origin_.get(), writer_, MessageType::kDelete,
                    {{"ids", {global.value()}}});
  EXPECT_EQ(deleted["deleted"], json::array({global.value()}));
  EXPECT_FALSE(Published(global));
  auto gone =
      Send(here_.get(), reader_, MessageType::kGetName, {{"name", "g2"}});
  EXPECT_TRUE((*gone)->status().IsObjectNotFound());
  gone = Send(here_.get(), reader_, MessageType::kGetMeta,
              {{"ids", {global.value()}}});
  EXPECT_TRUE((*gone)->status().IsObjectNotFound()) << (*gone)->status();
  // Its chunk is still there, and still published.
  Ok(origin_.get(), writer_, MessageType::kGetMeta, {{"ids", {there.value()}}});
  EXPECT_TRUE(Published(there));
}

TEST_F(GlobalObjectTest, BadMembersAreRefusedNamingTheMember) {
  ObjectID unpersisted = PutObject(/*persist=*/false);  // on the origin
  trellis::Status st = CreateError(GlobalTree({{"chunk_0", unpersisted}}));
  EXPECT_TRUE(st.IsObjectNotFound()) << st;
  EXPECT_TRUE(Contains(st, "member 'chunk_0'")) << st;
  EXPECT_TRUE(Contains(st, "persist it where it was made")) << st;

  ObjectID here = PutHere();
  json meta = Ok(here_.get(), reader_, MessageType::kGetMeta,
                 {{"ids", {here.value()}}});
  uint64_t blob = meta["trees"][0]["members"]["a"]["id"];
  Send(here_.get(), reader_, MessageType::kRelease, {{"ids", meta["held"]}});
  st = CreateError(GlobalTree({{"chunk_0", ObjectID(blob)}}));
  EXPECT_TRUE(st.IsInvalid()) << st;
  EXPECT_TRUE(Contains(st, "is a blob")) << st;

  json nested = GlobalTree({{"chunk_0", here}});
  nested["members"]["chunk_1"] = {{"typename", "test::New"}};
  st = CreateError(nested);
  EXPECT_TRUE(st.IsInvalid()) << st;
  EXPECT_TRUE(Contains(st, "member 'chunk_1'")) << st;

  json no_members = GlobalTree({});
  st = CreateError(no_members);
  EXPECT_TRUE(st.IsInvalid()) << st;

  json made = Ok(here_.get(), reader_, MessageType::kCreateObject,
                 {{"tree", GlobalTree({{"chunk_0", here}})}});
  st = CreateError(
      GlobalTree({{"chunk_0", ObjectID(made["id"].get<uint64_t>())}}));
  EXPECT_TRUE(st.IsInvalid()) << st;
  EXPECT_TRUE(Contains(st, "itself a global object")) << st;

  // None of the failures bound the name.
  auto name =
      Send(here_.get(), reader_, MessageType::kGetName, {{"name", "g"}});
  EXPECT_TRUE((*name)->status().IsObjectNotFound());
}

}  // namespace
}  // namespace trellis::server
