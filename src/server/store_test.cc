// The Store through its requests, without a daemon: a real arena, allocator
// and object table; a fake clock, a manual worker pool and an in-memory spill
// disk that fails on command. Every test runs three times: with the local
// MetaStore, which completes at once, and with it behind DeferredMetaStore in
// both its modes (calls carried out later; calls carried out at once but
// completions and name notifications later), as a remote backend would, so
// that the asynchronous paths are exercised.
#include "server/store.h"

#include <gtest/gtest.h>

#include <cstring>
#include <optional>

#include "common/protocol.h"
#include "testing/deferred_meta_store.h"
#include "testing/fake_clock.h"
#include "testing/fake_spill_storage.h"
#include "testing/manual_executor.h"

namespace trellis::server {
namespace {

using namespace std::chrono_literals;
using protocol::MessageType;
using testing::DeferredMetaStore;
using testing::FakeClock;
using testing::FakeSpillStorage;
using testing::ManualExecutor;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint16_t kInstance = 7;

bool Contains(const Status& st, const std::string& text) {
  return st.message().find(text) != std::string::npos;
}

// The replies a request got, whenever they came.
struct Replies {
  int calls = 0;
  std::optional<Result<json>> last;
  bool ok() const { return calls == 1 && last->ok(); }
  const Status& status() const { return last->status(); }
};

// A reply body, decoded if the store sent it pre-encoded.
json Decoded(const json& body) {
  if (!body.is_binary()) return body;
  const auto& bytes = body.get_binary();
  return protocol::DecodeBody(bytes.data(), bytes.size()).value();
}

json Ids(std::initializer_list<ObjectID> ids) {
  json out = json::array();
  for (ObjectID id : ids) out.push_back(id.value());
  return json{{"ids", out}};
}

enum class Meta { kImmediate, kDeferredCall, kDeferredCompletion };

class StoreTest : public ::testing::TestWithParam<Meta> {
 protected:
  bool deferred() const { return GetParam() != Meta::kImmediate; }

  void SetUp() override { Make(kMiB); }

  // An arena of `size` bytes, a disk of `disk`; `no_watermarks`: spill only
  // for requests that do not fit (watermarks at 1.0).
  void Make(uint64_t size, uint64_t disk = UINT64_MAX,
            bool no_watermarks = false) {
    store_.reset();
    meta_loop_.Clear();
    workers_.Clear();
    auto local = MakeLocalMetaStore(kInstance);
    local_ = local.get();
    std::unique_ptr<MetaStore> meta = std::move(local);
    if (deferred()) {
      meta = std::make_unique<DeferredMetaStore>(
          std::move(meta), &meta_loop_,
          GetParam() == Meta::kDeferredCall
              ? DeferredMetaStore::Mode::kCall
              : DeferredMetaStore::Mode::kCompletion);
    }
    auto spill = std::make_unique<FakeSpillStorage>(disk);
    disk_ = spill.get();
    StoreOptions options;
    options.size = size;
    options.instance_id = kInstance;
    if (no_watermarks) options.spill_high = options.spill_low = 1.0;
    auto store = Store::Create(options, std::move(meta), std::move(spill), "",
                               {&clock_, workers_.AsRunInBackground()});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(store).value();
    writer_ = store_->Connect();
    reader_ = store_->Connect();
  }

  // Sends a request. The body is gone when Send returns, as in the daemon.
  std::shared_ptr<Replies> Send(ClientId client, MessageType type, json body) {
    auto replies = std::make_shared<Replies>();
    store_->Handle(client, static_cast<uint16_t>(type), body,
                   [replies](Result<json> r) {
                     replies->calls++;
                     replies->last.emplace(std::move(r));
                   });
    return replies;
  }

  // Runs MetaStore completions and background jobs until none is left;
  // with `newest_first`, the MetaStore's in reverse order.
  void Settle(bool newest_first = false) {
    for (;;) {
      bool ran = newest_first ? meta_loop_.RunNewest() : meta_loop_.Run(0);
      if (!ran) ran = workers_.Run(0);
      if (!ran) return;
    }
  }

  // Send, Settle, and exactly one reply.
  Result<json> Call(ClientId client, MessageType type, json body) {
    auto replies = Send(client, type, std::move(body));
    Settle();
    EXPECT_EQ(replies->calls, 1)
        << protocol::MessageTypeName(static_cast<uint16_t>(type));
    if (replies->calls == 0) return Status::Invalid("no reply");
    Result<json> r = std::move(*replies->last);
    if (!r.ok()) return r;
    return Decoded(*r);
  }

  // Call, expecting success.
  json Ok(ClientId client, MessageType type, json body) {
    auto r = Call(client, type, std::move(body));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : json();
  }

  // A sealed blob of `size` bytes of `seed`, put by `client`.
  ObjectID PutBlob(ClientId client, size_t size, uint8_t seed) {
    json data = json::array({json::binary(std::vector<uint8_t>(size, seed))});
    json r = Ok(client, MessageType::kPutBlobs, {{"data", data}});
    return r.is_object() ? ObjectID(r["ids"][0].get<uint64_t>()) : ObjectID();
  }

  // A composite object of type test::T with field k=`value` and member b.
  json Tree(ObjectID member, int value) {
    return {{"typename", "test::T"},
            {"fields", {{"k", value}}},
            {"members", {{"b", {{"id", member.value()}}}}}};
  }

  ObjectID CreateObject(ClientId client, json body) {
    json r = Ok(client, MessageType::kCreateObject, std::move(body));
    return r.is_object() ? ObjectID(r["id"].get<uint64_t>()) : ObjectID();
  }

  Result<json> GetName(const std::string& name) {
    return Call(reader_, MessageType::kGetName, {{"name", name}});
  }

  json StatusReply() {
    return Ok(reader_, MessageType::kStatus, json::object());
  }

  size_t ObjectsOfTestType() {
    json r = Ok(reader_, MessageType::kListObjects, {{"pattern", "test::*"}});
    return r["objects"].size();
  }

  // Whether `id`'s bytes, got by `client`, are all `seed` (and releases).
  bool BlobIs(ClientId client, ObjectID id, size_t size, uint8_t seed) {
    auto r = Call(client, MessageType::kGetBlobs, Ids({id}));
    if (!r.ok()) {
      ADD_FAILURE() << r.status();
      return false;
    }
    EXPECT_EQ((*r)["sizes"][0], size);
    const uint8_t* p =
        store_->arena().base() + (*r)["offsets"][0].get<uint64_t>();
    bool same = true;
    for (size_t i = 0; i < size; ++i) same = same && p[i] == seed;
    Send(client, MessageType::kRelease, Ids({id}));
    return same;
  }

  FakeClock clock_;
  ManualExecutor workers_;
  ManualExecutor meta_loop_;  // DeferredMetaStore's completions
  MetaStore* local_ = nullptr;
  FakeSpillStorage* disk_ = nullptr;  // owned by the store
  std::unique_ptr<Store> store_;
  ClientId writer_ = 0, reader_ = 0;
};

INSTANTIATE_TEST_SUITE_P(MetaStore, StoreTest,
                         ::testing::Values(Meta::kImmediate,
                                           Meta::kDeferredCall,
                                           Meta::kDeferredCompletion),
                         [](const auto& info) -> std::string {
                           switch (info.param) {
                             case Meta::kImmediate:
                               return "Immediate";
                             case Meta::kDeferredCall:
                               return "DeferredCall";
                             default:
                               return "DeferredCompletion";
                           }
                         });

// ------------------------------------------------------------------ dispatch

TEST_P(StoreTest, TypesThatAreNotRequestsAreInvalid) {
  for (uint16_t type : {uint16_t{0}, uint16_t{1}, uint16_t{256}, uint16_t{999},
                        uint16_t{65535}}) {
    auto r = Send(writer_, static_cast<MessageType>(type), json::object());
    ASSERT_EQ(r->calls, 1) << type;
    EXPECT_TRUE(r->status().IsInvalid());
    EXPECT_TRUE(Contains(r->status(), "unexpected message type")) << type;
  }
}

TEST_P(StoreTest, MalformedBodiesAreInvalidNamingTheField) {
  struct Case {
    MessageType type;
    json body;
    std::string field;
  };
  std::vector<Case> cases = {
      {MessageType::kSeal, json::object(), "ids"},
      {MessageType::kCreateBlobs, {{"sizes", "x"}}, "sizes"},
      {MessageType::kPutBlobs, {{"data", 1}}, "data"},
      {MessageType::kGetBlobs, {{"ids", {"a"}}}, "ids"},
      {MessageType::kGetMeta, {{"names", {1}}}, "names"},
      {MessageType::kCreateObject, {{"tree", 1}}, "tree"},
      {MessageType::kPutName, {{"name", "x"}}, "id"},
      {MessageType::kGetName,
       {{"name", "x"}, {"timeout_ms", -1}},
       "timeout_ms"},
      {MessageType::kDropName, json::object(), "name"},
      {MessageType::kListNames, {{"limit", "all"}}, "limit"},
      {MessageType::kDelete, {{"ids", json::array()}, {"deep", 1}}, "deep"},
      {MessageType::kPersist, json::object(), "id"},
      {MessageType::kEvict, json::object(), "ids"},
  };
  for (const Case& c : cases) {
    auto r = Send(writer_, c.type, c.body);
    ASSERT_EQ(r->calls, 1) << c.body;  // parsed before anything is asked
    EXPECT_TRUE(r->status().IsInvalid()) << c.body;
    EXPECT_TRUE(Contains(r->status(), "'" + c.field + "'"))
        << c.body << ": " << r->status();
  }
  auto both = Send(writer_, MessageType::kGetMeta,
                   {{"ids", json::array()}, {"names", json::array()}});
  EXPECT_TRUE(Contains(both->status(), "not both"));
  EXPECT_EQ(meta_loop_.pending() + workers_.pending(), 0u);
}

TEST_P(StoreTest, ReleaseNeverRepliesAndDropsHolds) {
  ObjectID blob = PutBlob(writer_, 1000, 1);
  Ok(reader_, MessageType::kGetBlobs, Ids({blob}));
  EXPECT_GT(StatusReply()["held_bytes"].get<uint64_t>(), 0u);
  auto r = Send(reader_, MessageType::kRelease, Ids({blob}));
  auto bad = Send(reader_, MessageType::kRelease, {{"ids", "junk"}});
  Settle();
  EXPECT_EQ(r->calls + bad->calls, 0);
  EXPECT_EQ(StatusReply()["held_bytes"], 0);
}

TEST_P(StoreTest, HelloAndStatusNameTheInstanceAndBackend) {
  EXPECT_EQ(store_->instance_id(), kInstance);
  EXPECT_EQ(store_->HelloReply(writer_)["instance_id"], kInstance);
  json s = StatusReply();
  EXPECT_EQ(s["instance_id"], kInstance);
  EXPECT_EQ(s["backend"], "local");
  EXPECT_EQ(s["clients"], 2);
  EXPECT_EQ(s["spill_enabled"], true);
  EXPECT_EQ(s["spill_dir"], "fake-disk");
  EXPECT_EQ(s["spill_high"], 0.9);
  // Ids made here carry the instance.
  EXPECT_EQ(PutBlob(writer_, 10, 1).instance_id(), kInstance);
}

// --------------------------------------------------------------------- blobs

TEST_P(StoreTest, BlobsAreCreatedSealedGotAndAborted) {
  json created = Ok(writer_, MessageType::kCreateBlobs, {{"sizes", {100, 0}}});
  ASSERT_EQ(created["ids"].size(), 2u);
  ObjectID a(created["ids"][0].get<uint64_t>());
  ObjectID b(created["ids"][1].get<uint64_t>());
  std::memset(store_->arena().base() + created["offsets"][0].get<uint64_t>(), 3,
              100);
  // Unsealed: invisible to others.
  EXPECT_TRUE(
      Call(reader_, MessageType::kGetBlobs, Ids({a})).status().IsNotSealed());
  Ok(writer_, MessageType::kSeal, Ids({a}));
  EXPECT_TRUE(
      Call(writer_, MessageType::kSeal, Ids({a})).status().IsObjectExists());
  EXPECT_TRUE(BlobIs(reader_, a, 100, 3));
  Ok(writer_, MessageType::kAbort, Ids({b}));
  EXPECT_TRUE(
      Call(writer_, MessageType::kAbort, Ids({b})).status().IsObjectNotFound());
  EXPECT_EQ(StatusReply()["unsealed_blobs"], 0);
}

TEST_P(StoreTest, GetMetaReturnsTreesAndHoldsTheirBlobs) {
  ObjectID blob = PutBlob(writer_, 64, 1);
  ObjectID obj = CreateObject(writer_, {{"tree", Tree(blob, 5)}});
  json r = Ok(reader_, MessageType::kGetMeta, Ids({obj}));
  ASSERT_EQ(r["trees"].size(), 1u);
  EXPECT_EQ(r["trees"][0]["fields"]["k"], 5);
  EXPECT_EQ(r["trees"][0]["members"]["b"]["id"], blob.value());
  EXPECT_EQ(r["held"], json::array({blob.value()}));
  EXPECT_EQ(StatusReply()["held_bytes"], 64);
}

// --------------------------------------------------------------------- names

TEST_P(StoreTest, NamesAreBoundResolvedListedAndDropped) {
  ObjectID a = PutBlob(writer_, 10, 1);
  ObjectID b = PutBlob(writer_, 10, 2);
  Ok(writer_, MessageType::kPutName, {{"name", "x"}, {"id", a.value()}});
  Ok(writer_, MessageType::kPutName, {{"name", "y"}, {"id", b.value()}});
  EXPECT_EQ((*GetName("x"))["id"], a.value());
  auto taken = Call(writer_, MessageType::kPutName,
                    {{"name", "x"}, {"id", b.value()}, {"overwrite", false}});
  EXPECT_TRUE(taken.status().IsObjectExists()) << taken.status();
  json listed = Ok(reader_, MessageType::kListNames, {{"pattern", "*"}});
  EXPECT_EQ(listed["names"], json::array({"x", "y"}));
  EXPECT_EQ(listed["ids"], json::array({a.value(), b.value()}));
  // GetMeta by names, in order; an unbound one is named.
  json metas = Ok(reader_, MessageType::kGetMeta, {{"names", {"y", "x"}}});
  EXPECT_EQ(metas["trees"][0]["id"], b.value());
  EXPECT_EQ(metas["trees"][1]["id"], a.value());
  auto missing =
      Call(reader_, MessageType::kGetMeta, {{"names", {"x", "nope", "zz"}}});
  EXPECT_TRUE(missing.status().IsObjectNotFound());
  EXPECT_TRUE(Contains(missing.status(), "'nope'")) << missing.status();
  Ok(writer_, MessageType::kDropName, {{"name", "x"}});
  EXPECT_TRUE(GetName("x").status().IsObjectNotFound());
  EXPECT_TRUE(Call(writer_, MessageType::kDropName, {{"name", "x"}})
                  .status()
                  .IsObjectNotFound());
}

TEST_P(StoreTest, OnlyVisibleSealedObjectsCanBeNamed) {
  json created = Ok(writer_, MessageType::kCreateBlobs, {{"sizes", {8}}});
  uint64_t unsealed = created["ids"][0].get<uint64_t>();
  EXPECT_TRUE(
      Call(writer_, MessageType::kPutName, {{"name", "x"}, {"id", unsealed}})
          .status()
          .IsNotSealed());
  EXPECT_TRUE(Call(writer_, MessageType::kPutName,
                   {{"name", "x"}, {"id", ObjectID::Make(9, 9).value()}})
                  .status()
                  .IsObjectNotFound());
  ObjectID sealed = PutBlob(writer_, 8, 1);
  EXPECT_TRUE(Call(writer_, MessageType::kPutName,
                   {{"name", ""}, {"id", sealed.value()}})
                  .status()
                  .IsInvalid());
  EXPECT_TRUE(GetName("x").status().IsObjectNotFound());
}

TEST_P(StoreTest, AWaitingGetNameIsAnsweredByTheBind) {
  auto waiting =
      Send(reader_, MessageType::kGetName, {{"name", "x"}, {"wait", true}});
  Settle();
  EXPECT_EQ(waiting->calls, 0);
  ObjectID blob = PutBlob(writer_, 10, 1);
  ObjectID obj =
      CreateObject(writer_, {{"tree", Tree(blob, 1)}, {"name", "x"}});
  ASSERT_TRUE(waiting->ok()) << waiting->status();
  EXPECT_EQ(**waiting->last, json({{"id", obj.value()}}));
  // Bound already: answered at once (once the MetaStore answers).
  auto again = Send(reader_, MessageType::kGetName,
                    {{"name", "x"}, {"wait", true}, {"timeout_ms", 5}});
  Settle();
  EXPECT_TRUE(again->ok());
  clock_.Advance(1s);
  EXPECT_EQ(again->calls, 1);  // its timer finds it answered
}

TEST_P(StoreTest, AWaitingGetNameTimesOutOnTheClock) {
  auto short_wait = Send(reader_, MessageType::kGetName,
                         {{"name", "x"}, {"wait", true}, {"timeout_ms", 1000}});
  auto forever =
      Send(writer_, MessageType::kGetName, {{"name", "x"}, {"wait", true}});
  Settle();
  clock_.Advance(999ms);
  EXPECT_EQ(short_wait->calls, 0);
  clock_.Advance(1ms);
  ASSERT_EQ(short_wait->calls, 1);
  EXPECT_TRUE(short_wait->status().IsTimeout());
  EXPECT_TRUE(
      Contains(short_wait->status(), "no object was named 'x' within 1000 ms"));
  clock_.Advance(24h);
  EXPECT_EQ(forever->calls, 0);
  // A bind now answers the one still waiting, not the one that timed out.
  ObjectID blob = PutBlob(reader_, 10, 1);
  Ok(reader_, MessageType::kPutName, {{"name", "x"}, {"id", blob.value()}});
  EXPECT_TRUE(forever->ok());
  EXPECT_EQ(short_wait->calls, 1);
}

TEST_P(StoreTest, ABindRacingTheWaitersLookupIsNotMissed) {
  ObjectID blob = PutBlob(writer_, 10, 1);
  auto waiting =
      Send(reader_, MessageType::kGetName, {{"name", "x"}, {"wait", true}});
  auto put = Send(writer_, MessageType::kPutName,
                  {{"name", "x"}, {"id", blob.value()}});
  // Deferred: the bind is applied before the waiter's lookup.
  Settle(/*newest_first=*/true);
  EXPECT_TRUE(put->ok());
  ASSERT_EQ(waiting->calls, 1);
  EXPECT_EQ((**waiting->last)["id"], blob.value());
}

TEST_P(StoreTest, ADisconnectedWaiterIsNeverAnswered) {
  ClientId gone = store_->Connect();
  auto waiting = Send(gone, MessageType::kGetName,
                      {{"name", "x"}, {"wait", true}, {"timeout_ms", 10}});
  store_->Disconnect(gone);
  Settle();
  ObjectID blob = PutBlob(writer_, 10, 1);
  Ok(writer_, MessageType::kPutName, {{"name", "x"}, {"id", blob.value()}});
  clock_.Advance(1s);
  EXPECT_EQ(waiting->calls, 0);
}

TEST_P(StoreTest, AClientDisconnectingWhileItsPutNameIsInFlightGetsNoReply) {
  ObjectID blob = PutBlob(writer_, 10, 1);
  ClientId gone = store_->Connect();
  auto put =
      Send(gone, MessageType::kPutName, {{"name", "x"}, {"id", blob.value()}});
  store_->Disconnect(gone);
  Settle();
  // Deferred, the bind was still in flight: it happens, unanswered.
  EXPECT_EQ(put->calls, deferred() ? 0 : 1);
  EXPECT_EQ((*GetName("x"))["id"], blob.value());
  // The name is not left locked.
  ObjectID other = PutBlob(writer_, 10, 2);
  Ok(writer_, MessageType::kPutName, {{"name", "x"}, {"id", other.value()}});
  EXPECT_EQ((*GetName("x"))["id"], other.value());
}

// ------------------------------------------------------- CreateObject + names

TEST_P(StoreTest, TwoCreateObjectsRacingForANameOneWinsTheOtherCreatesNothing) {
  ObjectID blob = PutBlob(writer_, 10, 1);
  json first = {{"tree", Tree(blob, 1)}, {"name", "x"}, {"overwrite", false}};
  json second = {{"tree", Tree(blob, 2)}, {"name", "x"}, {"overwrite", false}};
  auto r1 = Send(writer_, MessageType::kCreateObject, first);
  auto r2 = Send(reader_, MessageType::kCreateObject, second);
  // Deferred, oldest first: without care both checks would pass before
  // either bind.
  Settle();
  ASSERT_EQ(r1->calls, 1);
  ASSERT_EQ(r2->calls, 1);
  ASSERT_NE(r1->last->ok(), r2->last->ok());
  const auto& winner = r1->last->ok() ? r1 : r2;
  const auto& loser = r1->last->ok() ? r2 : r1;
  EXPECT_TRUE(loser->status().IsObjectExists()) << loser->status();
  EXPECT_EQ(ObjectsOfTestType(), 1u);
  EXPECT_EQ((*GetName("x"))["id"], (**winner->last)["id"]);
}

TEST_P(StoreTest, CreateObjectWithATakenNameFailsBeforeCreatingAnything) {
  ObjectID bound = PutBlob(writer_, 10, 1);
  Ok(writer_, MessageType::kPutName, {{"name", "x"}, {"id", bound.value()}});
  json created = Ok(writer_, MessageType::kCreateBlobs, {{"sizes", {8}}});
  ObjectID unsealed(created["ids"][0].get<uint64_t>());
  auto r =
      Call(writer_, MessageType::kCreateObject,
           {{"tree", Tree(unsealed, 1)}, {"name", "x"}, {"overwrite", false}});
  EXPECT_TRUE(r.status().IsObjectExists());
  EXPECT_EQ(ObjectsOfTestType(), 0u);
  EXPECT_EQ(StatusReply()["unsealed_blobs"], 1);  // the tree did not seal it
  EXPECT_EQ((*GetName("x"))["id"], bound.value());
}

TEST_P(StoreTest, CreateObjectOfADisconnectedClientCreatesNothing) {
  ObjectID blob = PutBlob(writer_, 10, 1);
  ClientId gone = store_->Connect();
  auto r = Send(gone, MessageType::kCreateObject,
                {{"tree", Tree(blob, 1)}, {"name", "x"}, {"overwrite", false}});
  store_->Disconnect(gone);
  Settle();
  EXPECT_EQ(r->calls, deferred() ? 0 : 1);
  // Deferred, the client left during the name check: nothing was made.
  EXPECT_EQ(ObjectsOfTestType(), deferred() ? 0u : 1u);
  EXPECT_EQ(GetName("x").ok(), !deferred());
  // The name is not left locked.
  CreateObject(writer_, {{"tree", Tree(blob, 2)}, {"name", "x"}});
  EXPECT_TRUE(GetName("x").ok());
}

TEST_P(StoreTest, CreateObjectNamesAndPublishesTheTreeItWasSent) {
  ObjectID blob = PutBlob(writer_, 10, 1);
  ObjectID obj = CreateObject(writer_, {{"tree", Tree(blob, 42)},
                                        {"name", "x"},
                                        {"persist", true},
                                        {"overwrite", false}});
  ASSERT_TRUE(obj.valid());
  EXPECT_EQ((*GetName("x"))["id"], obj.value());
  // The body was gone long before the tree was built (deferred): the
  // object has the fields that were sent.
  json r = Ok(reader_, MessageType::kGetMeta, {{"names", {"x"}}});
  EXPECT_EQ(r["trees"][0]["fields"]["k"], 42);
  std::optional<Result<json>> published;
  local_->GetPublished(obj, [&](Result<json> t) { published = std::move(t); });
  ASSERT_TRUE(published && published->ok());
  EXPECT_EQ((**published)["fields"]["k"], 42);
  json listed =
      Ok(reader_, MessageType::kListObjects, {{"pattern", "test::T"}});
  EXPECT_EQ(listed["objects"][0]["persisted"], true);
}

// A tree of type test::T whose members b and c both name the blob of the
// request's `data` ({"id": 0}).
json InlineTree(int value) {
  return {{"typename", "test::T"},
          {"fields", {{"k", value}}},
          {"members", {{"b", {{"id", 0}}}, {"c", {{"id", 0}}}}}};
}

json Bytes(size_t size, uint8_t seed) {
  return json::binary(std::vector<uint8_t>(size, seed));
}

TEST_P(StoreTest, CreateObjectWithDataMakesItsBlobInTheSameRequest) {
  ObjectID obj = CreateObject(writer_, {{"tree", InlineTree(7)},
                                        {"data", Bytes(100, 9)},
                                        {"name", "x"},
                                        {"persist", true}});
  ASSERT_TRUE(obj.valid());
  json r = Ok(reader_, MessageType::kGetMeta, {{"names", {"x"}}});
  json tree = r["trees"][0];
  EXPECT_EQ(tree["fields"]["k"], 7);
  ObjectID blob(tree["members"]["b"]["id"].get<uint64_t>());
  EXPECT_EQ(tree["members"]["c"]["id"], blob.value());  // one blob, shared
  EXPECT_EQ(tree["nbytes"], 100);
  EXPECT_TRUE(BlobIs(reader_, blob, 100, 9));
  EXPECT_EQ(StatusReply()["unsealed_blobs"], 0);
  std::optional<Result<json>> published;
  local_->GetPublished(obj, [&](Result<json> t) { published = std::move(t); });
  ASSERT_TRUE(published && published->ok());
  EXPECT_EQ((**published)["members"]["b"]["id"], blob.value());
}

TEST_P(StoreTest, CreateObjectWithDataItCannotUseCreatesNothing) {
  json global = {{"global", true}, {"members", {{"a", {{"id", 0}}}}}};
  json no_ref = Tree(PutBlob(writer_, 10, 1), 1);
  uint64_t objects = StatusReply()["objects"].get<uint64_t>();
  struct Case {
    json body;
    std::string says;
  };
  std::vector<Case> cases = {
      {{{"tree", InlineTree(1)}, {"data", "bytes"}}, "'data'"},
      {{{"tree", no_ref}, {"data", Bytes(10, 1)}}, "no member"},
      {{{"tree", global}, {"data", Bytes(10, 1)}}, "global"},
      {{{"tree", InlineTree(1)}, {"data", Bytes(kMiB + 1, 1)}}, "inline limit"},
      {{{"tree", InlineTree(1)}}, ""},  // {"id": 0} without data
  };
  for (const Case& c : cases) {
    auto r = Call(writer_, MessageType::kCreateObject, c.body);
    EXPECT_TRUE(r.status().IsInvalid()) << r.status();
    EXPECT_TRUE(Contains(r.status(), c.says)) << r.status();
  }
  EXPECT_EQ(ObjectsOfTestType(), 0u);
  EXPECT_EQ(StatusReply()["objects"], objects);
  EXPECT_EQ(StatusReply()["unsealed_blobs"], 0);
}

TEST_P(StoreTest, ASpareBlobComesWithTheReplyAndTheNextPutFillsAndTrimsIt) {
  json first =
      Ok(writer_, MessageType::kCreateObject,
         {{"tree", InlineTree(1)}, {"data", Bytes(100, 1)}, {"spare", 4096}});
  ASSERT_TRUE(first.contains("spare")) << first;
  ObjectID spare(first["spare"]["id"].get<uint64_t>());
  uint64_t offset = first["spare"]["offset"].get<uint64_t>();
  EXPECT_EQ(StatusReply()["unsealed_blobs"], 1);
  // Others cannot see or use it.
  EXPECT_TRUE(
      Call(reader_, MessageType::kCreateObject, {{"tree", Tree(spare, 1)}})
          .status()
          .IsNotSealed());
  uint64_t used = StatusReply()["used"].get<uint64_t>();
  std::memset(store_->arena().base() + offset, 7, 300);
  json second = Ok(writer_, MessageType::kCreateObject,
                   {{"tree", Tree(spare, 2)},
                    {"trim", {{"id", spare.value()}, {"size", 300}}},
                    {"spare", 4096}});
  ObjectID obj(second["id"].get<uint64_t>());
  json tree = Ok(reader_, MessageType::kGetMeta, Ids({obj}))["trees"][0];
  EXPECT_EQ(tree["nbytes"], 300);  // the tail went back to the arena
  EXPECT_TRUE(BlobIs(reader_, spare, 300, 7));
  EXPECT_EQ(StatusReply()["used"].get<uint64_t>(), used - 4096 + 320 + 4096);
  // The next spare, given back by a put that asks for a larger one.
  ObjectID next(second["spare"]["id"].get<uint64_t>());
  json third = Ok(writer_, MessageType::kCreateObject,
                  {{"tree", InlineTree(3)},
                   {"data", Bytes(100, 1)},
                   {"abort", {next.value()}},
                   {"spare", 8192}});
  EXPECT_TRUE(third.contains("spare"));
  EXPECT_EQ(StatusReply()["unsealed_blobs"], 1);
  EXPECT_TRUE(Call(writer_, MessageType::kAbort, Ids({next}))
                  .status()
                  .IsObjectNotFound());
  // A disconnecting client's spare is freed.
  store_->Disconnect(writer_);
  EXPECT_EQ(StatusReply()["unsealed_blobs"], 0);
}

TEST_P(StoreTest, ASpareReservesTheIdOfThePutIntoIt) {
  json first =
      Ok(writer_, MessageType::kCreateObject,
         {{"tree", InlineTree(1)}, {"data", Bytes(100, 1)}, {"spare", 4096}});
  ASSERT_TRUE(first["spare"].contains("object")) << first;
  ObjectID spare(first["spare"]["id"].get<uint64_t>());
  ObjectID reserved(first["spare"]["object"].get<uint64_t>());
  // Not an object yet, and only for the client it was given to.
  EXPECT_TRUE(Call(reader_, MessageType::kGetMeta, Ids({reserved}))
                  .status()
                  .IsObjectNotFound());
  ObjectID blob = PutBlob(reader_, 10, 1);
  auto theirs = Call(reader_, MessageType::kCreateObject,
                     {{"tree", Tree(blob, 1)}, {"id", reserved.value()}});
  EXPECT_TRUE(theirs.status().IsInvalid()) << theirs.status();
  // Nor for a root that is a reference, or a global object.
  auto bare =
      Call(writer_, MessageType::kCreateObject,
           {{"tree", {{"id", spare.value()}}}, {"id", reserved.value()}});
  EXPECT_TRUE(bare.status().IsInvalid()) << bare.status();
  // The put into the spare gets it, and the next spare reserves another.
  json second =
      Ok(writer_, MessageType::kCreateObject,
         {{"tree", Tree(spare, 2)}, {"id", reserved.value()}, {"spare", 4096}});
  EXPECT_EQ(second["id"], reserved.value());
  ObjectID next(second["spare"]["object"].get<uint64_t>());
  EXPECT_NE(next, reserved);
  EXPECT_EQ(Ok(reader_, MessageType::kGetMeta,
               Ids({reserved}))["trees"][0]["fields"]["k"],
            2);
  // Used up: a second put with it is refused.
  ObjectID other = PutBlob(writer_, 10, 1);
  EXPECT_TRUE(Call(writer_, MessageType::kCreateObject,
                   {{"tree", Tree(other, 3)}, {"id", reserved.value()}})
                  .status()
                  .IsInvalid());
  // A put that does not use it leaves it reserved (the same id comes back).
  json third = Ok(writer_, MessageType::kCreateObject,
                  {{"tree", Tree(other, 4)}, {"spare", 4096}});
  EXPECT_EQ(third["spare"]["object"], next.value());
  EXPECT_NE(third["id"], next.value());
  // Dropped with the client.
  store_->Disconnect(writer_);
  EXPECT_TRUE(Call(reader_, MessageType::kGetMeta, Ids({next}))
                  .status()
                  .IsObjectNotFound());
}

TEST_P(StoreTest, ARequestNamingAReservedIdFirstTakesItsHoldersInput) {
  // The holder's transport has a CreateObject not read yet (a put that did
  // not wait): take_input hands it to the store when another client asks.
  json pending;
  ClientId holder = 0;
  int takes = 0;
  holder = store_->Connect(true, [&] {
    ++takes;
    if (pending.is_null()) return;
    json body = std::move(pending);
    pending = nullptr;
    Send(holder, MessageType::kCreateObject, std::move(body));
  });
  json first =
      Ok(holder, MessageType::kCreateObject,
         {{"tree", InlineTree(1)}, {"data", Bytes(100, 1)}, {"spare", 4096}});
  ObjectID spare(first["spare"]["id"].get<uint64_t>());
  ObjectID reserved(first["spare"]["object"].get<uint64_t>());
  pending = {{"tree", Tree(spare, 5)}, {"id", reserved.value()}};
  json got = Ok(reader_, MessageType::kGetMeta, Ids({reserved}));
  EXPECT_EQ(got["trees"][0]["fields"]["k"], 5);
  EXPECT_EQ(takes, 1);
  // Ids that are not reserved, or created already, do not ask.
  Ok(reader_, MessageType::kGetMeta, Ids({reserved}));
  (void)Call(reader_, MessageType::kGetMeta, Ids({ObjectID(12345)}));
  EXPECT_EQ(takes, 1);
  // A request naming it with "id" (PutName) asks too; nothing pending: the
  // id is not found, and the daemon says so.
  json second =
      Ok(holder, MessageType::kCreateObject,
         {{"tree", InlineTree(2)}, {"data", Bytes(100, 1)}, {"spare", 4096}});
  ObjectID next(second["spare"]["object"].get<uint64_t>());
  auto named = Call(reader_, MessageType::kPutName,
                    {{"name", "n"}, {"id", next.value()}});
  EXPECT_TRUE(named.status().IsObjectNotFound()) << named.status();
  EXPECT_EQ(takes, 2);
  store_->Disconnect(holder);
}

TEST_P(StoreTest, SpareBlobsAreOnlyGivenWhileMemoryIsPlentiful) {
  // 1 MiB arena: a spare that would fill it past 3/4 is not given, and the
  // put itself succeeds without one.
  json r = Ok(writer_, MessageType::kCreateObject,
              {{"tree", InlineTree(1)},
               {"data", Bytes(100, 1)},
               {"spare", kMiB / 4 * 3}});
  EXPECT_FALSE(r.contains("spare")) << r;
  r = Ok(writer_, MessageType::kCreateObject,
         {{"tree", InlineTree(1)}, {"data", Bytes(100, 1)}, {"spare", 4096}});
  EXPECT_TRUE(r.contains("spare")) << r;
}

TEST_P(StoreTest, BadSpareFieldsAreInvalidOrNotFoundAndCreateNothing) {
  ObjectID sealed = PutBlob(writer_, 10, 1);
  json created = Ok(writer_, MessageType::kCreateBlobs, {{"sizes", {100}}});
  ObjectID mine(created["ids"][0].get<uint64_t>());
  struct Case {
    json extra;
    StatusCode code;
    std::string says;
  };
  std::vector<Case> cases = {
      {{{"spare", "big"}}, StatusCode::kInvalid, "spare"},
      {{{"spare", Store::kMaxSpareBlob + 1}}, StatusCode::kInvalid, "limit"},
      {{{"abort", 5}}, StatusCode::kInvalid, "abort"},
      {{{"trim", 5}}, StatusCode::kInvalid, "trim"},
      {{{"trim", {{"id", mine.value()}}}}, StatusCode::kInvalid, "size"},
      {{{"trim", {{"id", mine.value()}, {"size", 101}}}},
       StatusCode::kInvalid,
       "101"},
      {{{"trim", {{"id", sealed.value()}, {"size", 5}}}},
       StatusCode::kObjectNotFound,
       "trim"},
      {{{"abort", {sealed.value()}}}, StatusCode::kObjectNotFound, "unsealed"},
  };
  for (const Case& c : cases) {
    json body = {{"tree", Tree(sealed, 1)}};
    body.update(c.extra);
    auto r = Call(writer_, MessageType::kCreateObject, body);
    EXPECT_EQ(r.status().code(), c.code) << c.extra << ": " << r.status();
    EXPECT_TRUE(Contains(r.status(), c.says)) << r.status();
  }
  EXPECT_EQ(ObjectsOfTestType(), 0u);
  EXPECT_EQ(StatusReply()["unsealed_blobs"], 1);  // `mine`, untouched
}

TEST_P(StoreTest, CreateObjectWithDataAndATakenNameLeavesNoBlob) {
  ObjectID bound = PutBlob(writer_, 10, 1);
  Ok(writer_, MessageType::kPutName, {{"name", "x"}, {"id", bound.value()}});
  uint64_t objects = StatusReply()["objects"].get<uint64_t>();
  auto r = Call(writer_, MessageType::kCreateObject,
                {{"tree", InlineTree(1)},
                 {"data", Bytes(100, 2)},
                 {"name", "x"},
                 {"overwrite", false}});
  EXPECT_TRUE(r.status().IsObjectExists());
  // A bad member fails validation after the blob was made: it is freed.
  auto bad =
      Call(writer_, MessageType::kCreateObject,
           {{"tree",
             {{"typename", "test::T"},
              {"members", {{"b", {{"id", 0}}}, {"c", {{"id", 12345}}}}}}},
            {"data", Bytes(100, 2)}});
  EXPECT_TRUE(bad.status().IsObjectNotFound()) << bad.status();
  EXPECT_EQ(StatusReply()["objects"], objects);
  EXPECT_EQ(StatusReply()["unsealed_blobs"], 0);
  EXPECT_EQ(StatusReply()["blobs"], 1);  // `bound`
  EXPECT_EQ((*GetName("x"))["id"], bound.value());
}

TEST_P(StoreTest, CreateObjectWithDataWaitsForASpillLikeCreateBlobs) {
  Make(kMiB, UINT64_MAX, /*no_watermarks=*/true);
  std::vector<ObjectID> full;
  for (int i = 0; i < 4; ++i) full.push_back(PutBlob(writer_, kMiB / 4, i + 1));
  ObjectID obj = CreateObject(
      writer_, {{"tree", InlineTree(3)}, {"data", Bytes(kMiB / 4, 7)}});
  ASSERT_TRUE(obj.valid());
  EXPECT_GT(StatusReply()["spill_count"].get<uint64_t>(), 0u);
  json r = Ok(reader_, MessageType::kGetMeta, Ids({obj}));
  ObjectID blob(r["trees"][0]["members"]["b"]["id"].get<uint64_t>());
  Send(reader_, MessageType::kRelease, Ids({blob}));
  EXPECT_TRUE(BlobIs(reader_, blob, kMiB / 4, 7));
  for (int i = 0; i < 4; ++i)
    EXPECT_TRUE(BlobIs(reader_, full[i], kMiB / 4, i + 1));
  // A client that leaves while its request waits gets nothing made.
  ClientId gone = store_->Connect();
  auto waiting = Send(gone, MessageType::kCreateObject,
                      {{"tree", InlineTree(4)}, {"data", Bytes(kMiB / 2, 1)}});
  store_->Disconnect(gone);
  Settle();
  EXPECT_EQ(waiting->calls, 0);
  EXPECT_EQ(StatusReply()["unsealed_blobs"], 0);
}

// ------------------------------------------------------ deletes and persists

TEST_P(StoreTest, DeleteRepliesOnceNamesAndPublishedTreesAreGone) {
  ObjectID blob = PutBlob(writer_, 10, 1);
  ObjectID obj = CreateObject(writer_, {{"tree", Tree(blob, 1)}});
  Ok(writer_, MessageType::kPersist, {{"id", obj.value()}});
  Ok(writer_, MessageType::kPutName, {{"name", "x"}, {"id", obj.value()}});
  Ok(writer_, MessageType::kPutName, {{"name", "b"}, {"id", blob.value()}});
  auto deleted = Send(writer_, MessageType::kDelete, Ids({obj}));
  EXPECT_EQ(deleted->calls, deferred() ? 0 : 1);
  Settle();
  ASSERT_TRUE(deleted->ok());
  std::set<uint64_t> ids;
  for (const json& id : (**deleted->last)["deleted"])
    ids.insert(id.get<uint64_t>());
  EXPECT_EQ(ids, (std::set<uint64_t>{obj.value(), blob.value()}));  // deep
  EXPECT_TRUE(GetName("x").status().IsObjectNotFound());
  EXPECT_TRUE(GetName("b").status().IsObjectNotFound());
  std::optional<Result<json>> published;
  local_->GetPublished(obj, [&](Result<json> t) { published = std::move(t); });
  EXPECT_TRUE(published->status().IsObjectNotFound());
  EXPECT_TRUE(Call(writer_, MessageType::kDelete, Ids({obj}))
                  .status()
                  .IsObjectNotFound());
}

TEST_P(StoreTest, PersistPublishesTheTree) {
  ObjectID blob = PutBlob(writer_, 10, 1);
  Ok(writer_, MessageType::kPersist, {{"id", blob.value()}});
  std::optional<Result<json>> published;
  local_->GetPublished(blob, [&](Result<json> t) { published = std::move(t); });
  ASSERT_TRUE(published && published->ok());
  EXPECT_EQ((**published)["id"], blob.value());
  EXPECT_TRUE(Call(writer_, MessageType::kPersist,
                   {{"id", ObjectID::Make(9, 9).value()}})
                  .status()
                  .IsObjectNotFound());
}

// ----------------------------------------------------------- memory pressure

// Formerly an end-to-end test with the spill directory on a 4 MiB tmpfs
// (root only, with retries around the races of file deletes): an 8 MiB arena
// and a 4 MiB disk. Puts beyond what fits fail with OutOfMemory naming the
// disk error, and no stored object is lost.
TEST_P(StoreTest, AFullSpillDiskDegradesToOutOfMemoryAndLosesNothing) {
  Make(8 * kMiB, /*disk=*/4 * kMiB);
  std::vector<ObjectID> stored;
  Result<json> failure = json();
  for (int i = 0; i < 20; ++i) {
    auto created =
        Call(writer_, MessageType::kCreateBlobs, {{"sizes", {kMiB}}});
    if (!created.ok()) {
      failure = created;
      break;
    }
    ObjectID id((*created)["ids"][0].get<uint64_t>());
    std::memset(
        store_->arena().base() + (*created)["offsets"][0].get<uint64_t>(),
        i + 1, kMiB);
    Ok(writer_, MessageType::kSeal, Ids({id}));
    stored.push_back(id);
  }
  ASSERT_FALSE(failure.ok());
  EXPECT_TRUE(failure.status().IsOutOfMemory()) << failure.status();
  EXPECT_TRUE(Contains(failure.status(), "No space left on device"))
      << failure.status();
  EXPECT_GT(stored.size(), 8u);   // more than fits in memory alone
  EXPECT_LE(stored.size(), 12u);  // 8 MiB of arena + 4 MiB of disk
  EXPECT_GT(StatusReply()["spill_failures"].get<uint64_t>(), 0u);
  // With memory and disk both full, reading a spilled object needs room:
  // deleting in-memory objects makes it, and then every other object reads
  // back intact (each reload frees the disk space of its copy).
  for (int i = 0; i < 2; ++i) {
    Ok(writer_, MessageType::kDelete, Ids({stored.back()}));
    stored.pop_back();
  }
  for (size_t i = 0; i < stored.size(); ++i) {
    EXPECT_TRUE(BlobIs(reader_, stored[i], kMiB, i + 1)) << i;
  }
}

TEST_P(StoreTest, AfterAFailedSpillRoundTheNextPutSpillsAfresh) {
  Make(kMiB, UINT64_MAX, /*no_watermarks=*/true);
  for (int i = 0; i < 4; ++i) PutBlob(writer_, kMiB / 4, i);
  disk_->FailNextWrites(1);
  auto failed =
      Call(writer_, MessageType::kCreateBlobs, {{"sizes", {kMiB / 4}}});
  EXPECT_TRUE(failed.status().IsOutOfMemory());
  EXPECT_TRUE(Contains(failed.status(), "spilling failed")) << failed.status();
  EXPECT_TRUE(
      Call(writer_, MessageType::kCreateBlobs, {{"sizes", {kMiB / 4}}}).ok());
  json s = StatusReply();
  EXPECT_EQ(s["spill_failures"], 1);
  EXPECT_EQ(s["spill_count"], 1);
  EXPECT_EQ(s["out_of_memory_count"], 1);
}

TEST_P(StoreTest, AnUnreadableSpillCopyFailsTheGetAndHoldsNothing) {
  ObjectID blob = PutBlob(writer_, 1000, 5);
  ObjectID obj = CreateObject(writer_, {{"tree", Tree(blob, 1)}});
  EXPECT_EQ(Ok(writer_, MessageType::kEvict, Ids({obj}))["evicted_bytes"],
            1000);
  disk_->FailReadsOf(blob);
  auto r = Call(reader_, MessageType::kGetMeta, Ids({obj}));
  EXPECT_TRUE(r.status().IsIOError()) << r.status();
  json s = StatusReply();
  EXPECT_EQ(s["held_bytes"], 0);
  EXPECT_EQ(s["spilled_blobs"], 1);
  EXPECT_EQ(s["reload_failures"], 1);
  disk_->ClearReadFailure(blob);
  EXPECT_TRUE(BlobIs(reader_, blob, 1000, 5));
  EXPECT_EQ(StatusReply()["reload_count"], 1);
}

TEST_P(StoreTest, ABlobStaysReadableWhileItsSpillIsSlow) {
  ObjectID blob = PutBlob(writer_, 1000, 6);
  auto evicted = Send(writer_, MessageType::kEvict, Ids({blob}));
  ASSERT_EQ(workers_.pending(), 1u);  // the write, not yet done
  // Reading meanwhile needs no reload.
  auto got = Send(reader_, MessageType::kGetBlobs, Ids({blob}));
  ASSERT_TRUE(got->ok());
  EXPECT_EQ(evicted->calls, 0);
  Settle();
  EXPECT_TRUE(evicted->ok());
  json s = StatusReply();
  EXPECT_EQ(s["spilled_blobs"], 0);  // held: kept in memory
  EXPECT_EQ(disk_->used_bytes(), 0u);
}

TEST_P(StoreTest, ARequestWaitingForMemoryIsDroppedWithItsClient) {
  Make(kMiB, UINT64_MAX, /*no_watermarks=*/true);
  for (int i = 0; i < 4; ++i) PutBlob(writer_, kMiB / 4, i);
  ClientId gone = store_->Connect();
  auto head = Send(writer_, MessageType::kCreateBlobs, {{"sizes", {kMiB / 4}}});
  auto waiting = Send(gone, MessageType::kCreateBlobs, {{"sizes", {kMiB / 4}}});
  auto waiting_too =
      Send(gone, MessageType::kCreateBlobs, {{"sizes", {kMiB / 4}}});
  EXPECT_EQ(head->calls + waiting->calls + waiting_too->calls, 0);
  store_->Disconnect(gone);
  disk_->set_capacity(0);  // the spill fails: every waiting request fails
  Settle();
  ASSERT_EQ(head->calls, 1);
  EXPECT_TRUE(head->status().IsOutOfMemory());
  EXPECT_EQ(waiting->calls + waiting_too->calls, 0);  // unanswered
  EXPECT_EQ(StatusReply()["unsealed_blobs"], 0);
}

TEST_P(StoreTest, PinReloadsAndKeepsBlobsInMemory) {
  ObjectID blob = PutBlob(writer_, 1000, 8);
  Ok(writer_, MessageType::kEvict, Ids({blob}));
  Ok(writer_, MessageType::kPin, Ids({blob}));
  json s = StatusReply();
  EXPECT_EQ(s["spilled_blobs"], 0);
  EXPECT_EQ(s["pinned_bytes"], 1000);
  EXPECT_TRUE(
      Call(writer_, MessageType::kEvict, Ids({blob})).status().IsInvalid());
  Ok(writer_, MessageType::kUnpin, Ids({blob}));
  Ok(writer_, MessageType::kEvict, Ids({blob}));
  EXPECT_TRUE(BlobIs(reader_, blob, 1000, 8));
}

TEST_P(StoreTest, MemoryTrimCountsWhatItReturned) {
  json r = Ok(writer_, MessageType::kMemoryTrim, json::object());
  EXPECT_TRUE(r.contains("trimmed_bytes"));
  EXPECT_EQ(StatusReply()["trimmed_bytes_total"], r["trimmed_bytes"]);
}

TEST_P(StoreTest, WritableRangeIsTheCreatorsUnsealedBlobOnly) {
  json created = Ok(writer_, MessageType::kCreateBlobs, {{"sizes", {100}}});
  ObjectID id(created["ids"][0].get<uint64_t>());
  uint64_t offset = created["offsets"][0];
  auto range = store_->WritableRange(writer_, id, 10, 90);
  ASSERT_TRUE(range.ok()) << range.status();
  EXPECT_EQ(*range, store_->arena().base() + offset + 10);
  EXPECT_TRUE(store_->WritableRange(writer_, id, 100, 0).ok());
  EXPECT_TRUE(Contains(store_->WritableRange(writer_, id, 10, 91).status(),
                       "outside blob"));
  EXPECT_TRUE(
      store_->WritableRange(writer_, id, UINT64_MAX, 2).status().IsInvalid());
  EXPECT_TRUE(Contains(store_->WritableRange(reader_, id, 0, 1).status(),
                       "another client"));
  Ok(writer_, MessageType::kSeal, Ids({id}));
  EXPECT_TRUE(
      Contains(store_->WritableRange(writer_, id, 0, 1).status(), "sealed"));
  ObjectID object = CreateObject(writer_, {{"tree", Tree(id, 1)}});
  EXPECT_TRUE(
      store_->WritableRange(writer_, object, 0, 0).status().IsObjectNotFound());
  EXPECT_TRUE(store_->WritableRange(writer_, ObjectID(12345), 0, 0)
                  .status()
                  .IsObjectNotFound());
}

TEST_P(StoreTest, GetMetaRelocatesByIdsAndByNames) {
  ObjectID small = PutBlob(writer_, 10, 1);
  ObjectID blob = PutBlob(writer_, 100, 2);
  ObjectID object =
      CreateObject(writer_, {{"tree", Tree(blob, 1)}, {"name", "relocated"}});
  for (json body : {json{{"ids", {small.value(), object.value()}}},
                    json{{"names", {"relocated"}}}}) {
    bool by_name = body.contains("names");
    body["relocate"] = true;
    json got = Ok(reader_, MessageType::kGetMeta, body);
    const json& tree = got["trees"][by_name ? 0 : 1];
    // Positions in the back-to-back layout of `held`: 0, then 64.
    EXPECT_EQ(tree["members"]["b"]["offset"], by_name ? 0u : 64u) << body;
    if (!by_name) {
      EXPECT_EQ(got["trees"][0]["offset"], 0u);
    }
    Send(reader_, MessageType::kRelease, {{"ids", got["held"]}});
  }
  EXPECT_EQ(StatusReply()["held_bytes"], 0u);
  auto bad = Call(reader_, MessageType::kGetMeta,
                  {{"ids", {object.value()}}, {"relocate", "yes"}});
  EXPECT_TRUE(Contains(bad.status(), "'relocate'"));
}

// ------------------------------------------------------------------- locate

TEST_P(StoreTest, LocateSaysWhereEachObjectLivesInOrder) {
  ObjectID blob = PutBlob(writer_, 100, 2);
  ObjectID object =
      CreateObject(writer_, {{"tree", Tree(blob, 1)}, {"name", "here"}});
  // Another member's objects: one published (its tree says its size), one
  // not (only its maker knows more than the id says).
  constexpr uint16_t kOther = 9;
  ObjectID published = ObjectID::Make(kOther, 1);
  ObjectID unpublished = ObjectID::Make(kOther, 2);
  std::optional<Status> done;
  local_->Publish(published,
                  {{"id", published.value()},
                   {"typename", "test::Remote"},
                   {"nbytes", 4096},
                   {"instance_id", kOther}},
                  [&](Status st) { done = st; });
  Settle();
  ASSERT_TRUE(done && done->ok()) << *done;

  json got = Ok(reader_, MessageType::kLocate,
                Ids({unpublished, object, published, blob}));
  const json& objects = got["objects"];
  ASSERT_EQ(objects.size(), 4u) << got;
  EXPECT_EQ(objects[0], (json{{"id", unpublished.value()},
                              {"instance_id", kOther},
                              {"here", false}}));
  EXPECT_EQ(objects[1]["id"], object.value());
  EXPECT_EQ(objects[1]["typename"], "test::T");
  EXPECT_EQ(objects[1]["instance_id"], kInstance);
  EXPECT_EQ(objects[1]["here"], true);
  EXPECT_GE(objects[1]["nbytes"].get<uint64_t>(), 100u);
  EXPECT_EQ(objects[2]["typename"], "test::Remote");
  EXPECT_EQ(objects[2]["nbytes"], 4096);
  EXPECT_EQ(objects[2]["instance_id"], kOther);
  EXPECT_EQ(objects[2]["here"], false);
  EXPECT_FALSE(objects[2].contains("global"));
  EXPECT_EQ(objects[3]["nbytes"], 100);

  json by_name = Ok(reader_, MessageType::kLocate, {{"names", {"here"}}});
  EXPECT_EQ(by_name["objects"][0], objects[1]);
  // Locating holds nothing.
  EXPECT_EQ(StatusReply()["held_bytes"], 0u);
}

TEST_P(StoreTest, LocateOfAGlobalObjectListsItsChunks) {
  ObjectID chunk = PutBlob(writer_, 64, 3);
  Ok(writer_, MessageType::kPersist, {{"id", chunk.value()}});
  ObjectID remote_chunk = ObjectID::Make(9, 5);
  ObjectID global = ObjectID::Make(9, 6);
  std::optional<Status> done;
  local_->Publish(global,
                  {{"id", global.value()},
                   {"typename", "test::Global"},
                   {"nbytes", 64 + 32},
                   {"instance_id", 9},
                   {"global", true},
                   {"members",
                    {{"0",
                      {{"id", chunk.value()},
                       {"typename", "trellis::Blob"},
                       {"nbytes", 64},
                       {"instance_id", kInstance},
                       {"fields", {{"x", 1}}}}},
                     {"1",
                      {{"id", remote_chunk.value()},
                       {"typename", "trellis::Blob"},
                       {"nbytes", 32},
                       {"instance_id", 9}}}}}},
                  [&](Status st) { done = st; });
  Settle();
  ASSERT_TRUE(done && done->ok()) << *done;
  json got = Ok(reader_, MessageType::kLocate, Ids({global}));
  const json& entry = got["objects"][0];
  EXPECT_EQ(entry["global"], true);
  EXPECT_EQ(entry["here"], false);
  ASSERT_EQ(entry["chunks"].size(), 2u) << entry;
  EXPECT_EQ(entry["chunks"][0]["member"], "0");
  EXPECT_EQ(entry["chunks"][0]["here"], true);
  EXPECT_EQ(entry["chunks"][0]["nbytes"], 64);
  EXPECT_FALSE(entry["chunks"][0].contains("fields"));
  EXPECT_EQ(entry["chunks"][1]["here"], false);
  EXPECT_EQ(entry["chunks"][1]["instance_id"], 9);
}

TEST_P(StoreTest, LocateNamesWhatItCannotFind) {
  ObjectID blob = PutBlob(writer_, 10, 1);
  ObjectID gone = ObjectID::Make(kInstance, 12345);
  auto missing = Call(reader_, MessageType::kLocate, Ids({blob, gone}));
  EXPECT_TRUE(missing.status().IsObjectNotFound()) << missing.status();
  EXPECT_TRUE(Contains(missing.status(), gone.ToString())) << missing.status();
  auto unbound =
      Call(reader_, MessageType::kLocate, {{"names", {"nobody-bound-this"}}});
  EXPECT_TRUE(unbound.status().IsObjectNotFound()) << unbound.status();
  EXPECT_TRUE(Contains(unbound.status(), "nobody-bound-this"))
      << unbound.status();
  auto both = Call(reader_, MessageType::kLocate,
                   {{"ids", {blob.value()}}, {"names", {"x"}}});
  EXPECT_TRUE(both.status().IsInvalid());
  EXPECT_TRUE(Contains(both.status(), "not both"));
  auto malformed = Call(reader_, MessageType::kLocate, {{"ids", "nope"}});
  EXPECT_TRUE(Contains(malformed.status(), "'ids'")) << malformed.status();
  EXPECT_TRUE(Ok(reader_, MessageType::kLocate, Ids({}))["objects"].empty());
}

}  // namespace
}  // namespace trellis::server
