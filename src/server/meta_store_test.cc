// The MetaStore contract, for the local backend, and for DeferredMetaStore
// (the test stand-in for a remote backend).
#include "server/meta_store.h"

#include <gtest/gtest.h>

#include <optional>
#include <set>

#include "testing/deferred_meta_store.h"
#include "testing/manual_executor.h"

namespace trellis::server {
namespace {

using nlohmann::json;
using testing::DeferredMetaStore;
using testing::ManualExecutor;

// Records the calls of a completion (R: Status or Result<T>).
template <typename R>
struct Capture {
  std::function<void(R)> cb() {
    return [this](R r) {
      ++calls;
      value.emplace(std::move(r));
    };
  }
  int calls = 0;
  std::optional<R> value;
};

const ObjectID kA = ObjectID::Make(7, 1);
const ObjectID kB = ObjectID::Make(7, 2);

TEST(LocalMetaStoreTest, RegisterAssignsTheConfiguredIdAndListsItself) {
  auto meta = MakeLocalMetaStore(42);
  EXPECT_EQ(meta->backend(), "local");
  InstanceInfo self;
  self.instance_id = 9;  // ignored: Register assigns
  self.hostname = "node-1";
  self.ipc_socket = "/tmp/x.sock";
  self.arena_size = 1 << 20;
  Capture<Result<uint16_t>> id;
  meta->Register(self, id.cb());
  ASSERT_EQ(id.calls, 1);  // before Register returned
  ASSERT_TRUE(id.value->ok());
  EXPECT_EQ(**id.value, 42);
  Capture<Result<std::vector<InstanceInfo>>> instances;
  meta->ListInstances(instances.cb());
  ASSERT_EQ(instances.calls, 1);
  ASSERT_EQ((*instances.value)->size(), 1u);
  const InstanceInfo& listed = (**instances.value)[0];
  EXPECT_EQ(listed.instance_id, 42);
  EXPECT_EQ(listed.hostname, "node-1");
  EXPECT_EQ(listed.ipc_socket, "/tmp/x.sock");
  EXPECT_EQ(listed.arena_size, 1u << 20);
}

TEST(LocalMetaStoreTest, RegisterWithoutAnIdPicksANonZeroRandomOne) {
  std::set<uint16_t> ids;
  for (int i = 0; i < 20; ++i) {
    auto meta = MakeLocalMetaStore();
    Capture<Result<uint16_t>> id;
    meta->Register(InstanceInfo{}, id.cb());
    ASSERT_EQ(id.calls, 1);
    ASSERT_TRUE(id.value->ok());
    EXPECT_NE(**id.value, 0);
    ids.insert(**id.value);
  }
  EXPECT_GT(ids.size(), 1u);  // 20 draws from 65535 ids all equal: broken
}

TEST(LocalMetaStoreTest, NamesBindGetDropAndList) {
  auto meta = MakeLocalMetaStore(1);
  std::vector<std::pair<std::string, ObjectID>> heard;
  meta->SetNameListener([&](const std::string& name, ObjectID id) {
    heard.emplace_back(name, id);
  });
  Capture<Status> put;
  meta->PutName("b", kA, false, put.cb());
  ASSERT_EQ(put.calls, 1);
  EXPECT_TRUE(put.value->ok());
  ASSERT_EQ(heard.size(), 1u);  // the listener hears before `done`
  EXPECT_EQ(heard[0].first, "b");

  Capture<Status> again;
  meta->PutName("b", kB, false, again.cb());
  EXPECT_TRUE(again.value->IsObjectExists()) << *again.value;
  EXPECT_EQ(heard.size(), 1u);  // nothing bound, nothing heard
  Capture<Status> empty;
  meta->PutName("", kB, true, empty.cb());
  EXPECT_TRUE(empty.value->IsInvalid());

  Capture<Status> over;
  meta->PutName("b", kB, true, over.cb());
  EXPECT_TRUE(over.value->ok());
  meta->PutName("a", kA, true, put.cb());
  meta->PutName("c", kA, true, put.cb());

  Capture<Result<ObjectID>> got;
  meta->GetName("b", got.cb());
  ASSERT_TRUE(got.value->ok());
  EXPECT_EQ(**got.value, kB);
  meta->GetName("zz", got.cb());
  EXPECT_TRUE(got.value->status().IsObjectNotFound());
  EXPECT_NE(got.value->status().message().find("'zz'"), std::string::npos);

  Capture<Result<MetaStore::NameList>> list;
  meta->ListNames("*", 2, list.cb());
  ASSERT_TRUE(list.value->ok());
  MetaStore::NameList want = {{"a", kA}, {"b", kB}};  // sorted, limited
  EXPECT_EQ(**list.value, want);
  meta->ListNames("[bc]", 10, list.cb());
  want = {{"b", kB}, {"c", kA}};
  EXPECT_EQ(**list.value, want);

  Capture<Status> drop;
  meta->DropName("b", drop.cb());
  EXPECT_TRUE(drop.value->ok());
  meta->DropName("b", drop.cb());
  EXPECT_TRUE(drop.value->IsObjectNotFound());

  // Dropping the names of kA drops "a" and "c", and not a name rebound
  // away from it ("b" was kA's first).
  meta->PutName("b", kB, true, put.cb());
  Capture<Status> of;
  meta->DropNamesOf(kA, of.cb());
  EXPECT_TRUE(of.value->ok());
  meta->ListNames("*", 10, list.cb());
  want = {{"b", kB}};
  EXPECT_EQ(**list.value, want);
  meta->DropNamesOf(kA, of.cb());  // none left: fine
  EXPECT_TRUE(of.value->ok());
  EXPECT_EQ(of.calls, 2);
}

TEST(LocalMetaStoreTest, PublishedTreesCanBeReadAndWithdrawn) {
  auto meta = MakeLocalMetaStore(1);
  Capture<Result<json>> got;
  meta->GetPublished(kA, got.cb());
  EXPECT_TRUE(got.value->status().IsObjectNotFound());
  Capture<Status> st;
  meta->Publish(kA, json{{"typename", "T"}}, st.cb());
  EXPECT_TRUE(st.value->ok());
  meta->GetPublished(kA, got.cb());
  ASSERT_TRUE(got.value->ok());
  EXPECT_EQ((**got.value)["typename"], "T");
  meta->Unpublish(kA, st.cb());
  EXPECT_TRUE(st.value->ok());
  meta->GetPublished(kA, got.cb());
  EXPECT_TRUE(got.value->status().IsObjectNotFound());
  meta->Unpublish(kB, st.cb());  // never published: fine
  EXPECT_TRUE(st.value->ok());
}

TEST(DeferredMetaStoreTest, CallsHappenOnlyWhenTheLoopRunsThem) {
  ManualExecutor loop;
  DeferredMetaStore meta(MakeLocalMetaStore(5), &loop);
  int heard = 0;
  meta.SetNameListener([&](const std::string&, ObjectID) { ++heard; });
  Capture<Status> put;
  Capture<Result<ObjectID>> got;
  meta.PutName("x", kA, true, put.cb());
  meta.GetName("x", got.cb());
  EXPECT_EQ(put.calls + got.calls + heard, 0);
  EXPECT_EQ(meta.calls_in_flight(), 2u);
  // Run the get before the put: the name is not bound yet.
  ASSERT_TRUE(loop.Run(1));
  EXPECT_TRUE(got.value->status().IsObjectNotFound());
  ASSERT_TRUE(loop.Run(0));
  EXPECT_TRUE(put.value->ok());
  EXPECT_EQ(heard, 1);  // with the put, through the wrapper's listener
  EXPECT_EQ(meta.calls_in_flight(), 0u);
}

TEST(DeferredMetaStoreTest, CompletionsAndNotificationsCanComeInAnyOrder) {
  ManualExecutor loop;
  DeferredMetaStore meta(MakeLocalMetaStore(5), &loop,
                         DeferredMetaStore::Mode::kCompletion);
  int heard = 0;
  meta.SetNameListener([&](const std::string&, ObjectID) { ++heard; });
  Capture<Result<ObjectID>> before;
  meta.GetName("x", before.cb());  // applied now: not bound yet
  Capture<Status> put;
  meta.PutName("x", kA, true, put.cb());
  Capture<Result<ObjectID>> after;
  meta.GetName("x", after.cb());  // applied now: bound
  EXPECT_EQ(before.calls + put.calls + after.calls + heard, 0);
  ASSERT_EQ(loop.pending(), 4u);  // 3 completions and 1 notification
  // The notification (queued with the put) before the first completion.
  ASSERT_TRUE(loop.Run(1));
  EXPECT_EQ(heard, 1);
  EXPECT_EQ(before.calls, 0);
  loop.RunAll();
  EXPECT_TRUE(before.value->status().IsObjectNotFound());
  EXPECT_TRUE(put.value->ok());
  ASSERT_TRUE(after.value->ok());
  EXPECT_EQ(**after.value, kA);
}

TEST(DeferredMetaStoreTest, DestroyedStoreDropsItsCompletions) {
  ManualExecutor loop;
  Capture<Status> put;
  {
    DeferredMetaStore meta(MakeLocalMetaStore(5), &loop);
    meta.PutName("x", kA, true, put.cb());
  }
  EXPECT_EQ(loop.RunAll(), 1u);
  EXPECT_EQ(put.calls, 0);
}

}  // namespace
}  // namespace trellis::server
