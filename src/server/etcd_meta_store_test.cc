// EtcdMetaStore against a real etcd server (testing::EtcdProcess), no mocks.
// The test thread plays the daemon's loop: a ManualLoop collects what the
// backend posts, and the test runs it.

#include "server/etcd_meta_store.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "testing/etcd.h"

namespace trellis::server {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::EtcdProcess;
using SteadyClock = std::chrono::steady_clock;

// Bound on waiting for something etcd does by itself: generous, a test only
// waits that long when it fails.
constexpr auto kPatience = seconds(20);

// The daemon's loop, run by the test thread: functions posted from any
// thread run only inside RunUntil / RunPending.
class ManualLoop {
 public:
  EtcdMetaStore::Post poster() {
    return [this](std::function<void()> fn) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        queue_.push_back(std::move(fn));
      }
      cv_.notify_all();
    };
  }

  // Runs posted functions until `pred` holds; false if it still does not
  // after `patience`. `pred` may also depend on other threads (stats): it
  // is checked at least every few milliseconds.
  template <typename Pred>
  bool RunUntil(Pred pred, SteadyClock::duration patience = kPatience) {
    const auto deadline = SteadyClock::now() + patience;
    while (!pred()) {
      if (SteadyClock::now() >= deadline) return false;
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> lock(mu_);
        const auto slice =
            std::min(deadline, SteadyClock::now() + milliseconds(5));
        if (!cv_.wait_until(lock, slice, [&] { return !queue_.empty(); })) {
          continue;
        }
        fn = std::move(queue_.front());
        queue_.pop_front();
      }
      fn();
    }
    return true;
  }

  // Runs what has been posted so far; returns how many.
  size_t RunPending() {
    std::deque<std::function<void()>> ready;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ready.swap(queue_);
    }
    for (auto& fn : ready) fn();
    return ready.size();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;  // guarded by mu_
};

// What a store's NameListener heard (on the loop thread).
struct Heard {
  std::vector<std::pair<std::string, ObjectID>> names;
  bool Has(const std::string& name, ObjectID id) const {
    for (const auto& [n, i] : names) {
      if (n == name && i == id) return true;
    }
    return false;
  }
};

class EtcdMetaStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto etcd = EtcdProcess::Start();
    ASSERT_TRUE(etcd.ok()) << etcd.status();
    etcd_ = std::move(*etcd);
    etcd::EtcdOptions raw;
    raw.endpoints = {etcd_->endpoint()};
    auto client = etcd::EtcdClient::Make(raw);
    ASSERT_TRUE(client.ok()) << client.status();
    raw_ = std::move(*client);
  }

  void TearDown() override {
    if (stopped_etcd_) kill(etcd_->pid(), SIGCONT);
  }

  EtcdMetaStoreOptions Options(const std::string& cluster = "test") {
    EtcdMetaStoreOptions o;
    o.endpoints = {etcd_->endpoint()};
    o.cluster = cluster;
    o.lease_ttl = seconds(2);  // etcd's minimum
    o.keepalive_interval = milliseconds(500);
    o.timeout = milliseconds(1000);
    return o;
  }

  std::unique_ptr<EtcdMetaStore> Make(EtcdMetaStoreOptions o,
                                      Heard* heard = nullptr) {
    auto store = EtcdMetaStore::Make(std::move(o), loop_.poster());
    EXPECT_TRUE(store.ok()) << store.status();
    if (!store.ok()) return nullptr;
    if (heard) {
      (*store)->SetNameListener(
          [this, heard](const std::string& name, ObjectID id) {
            EXPECT_EQ(std::this_thread::get_id(), loop_thread_);
            heard->names.emplace_back(name, id);
          });
    }
    return std::move(*store);
  }

  // Makes and registers a store; its id in *id.
  std::unique_ptr<EtcdMetaStore> Join(EtcdMetaStoreOptions o, uint16_t* id,
                                      Heard* heard = nullptr) {
    auto store = Make(std::move(o), heard);
    if (!store) return nullptr;
    InstanceInfo self;
    self.hostname = "host-" + std::to_string(counter_++);
    self.ipc_socket = "/tmp/sock-" + self.hostname;
    self.arena_size = 64 << 20;
    auto got = Await<uint16_t>(
        [&](auto done) { store->Register(self, std::move(done)); });
    EXPECT_TRUE(got.ok()) << got.status();
    *id = got.ok() ? *got : 0;
    return store;
  }

  // Issues a call and runs the loop until its completion ran.
  template <typename T, typename Call>
  Result<T> Await(Call call) {
    std::optional<Result<T>> out;
    call([&](Result<T> r) {
      EXPECT_EQ(std::this_thread::get_id(), loop_thread_);
      out.emplace(std::move(r));
    });
    if (!loop_.RunUntil([&] { return out.has_value(); })) {
      return Status::Timeout("the call never completed");
    }
    return std::move(*out);
  }
  template <typename Call>
  Status AwaitStatus(Call call) {
    std::optional<Status> out;
    call([&](Status st) {
      EXPECT_EQ(std::this_thread::get_id(), loop_thread_);
      out.emplace(std::move(st));
    });
    if (!loop_.RunUntil([&] { return out.has_value(); })) {
      return Status::Timeout("the call never completed");
    }
    return *out;
  }

  Status Put(MetaStore& s, const std::string& name, ObjectID id,
             bool overwrite = true) {
    return AwaitStatus(
        [&](auto done) { s.PutName(name, id, overwrite, std::move(done)); });
  }
  Result<ObjectID> Get(MetaStore& s, const std::string& name) {
    return Await<ObjectID>(
        [&](auto done) { s.GetName(name, std::move(done)); });
  }
  Result<MetaStore::NameList> List(MetaStore& s, const std::string& pattern,
                                   size_t limit = 1000) {
    return Await<MetaStore::NameList>(
        [&](auto done) { s.ListNames(pattern, limit, std::move(done)); });
  }
  Result<std::vector<InstanceInfo>> Members(MetaStore& s) {
    return Await<std::vector<InstanceInfo>>(
        [&](auto done) { s.ListInstances(std::move(done)); });
  }
  static bool HasMember(const std::vector<InstanceInfo>& members, uint16_t id) {
    for (const auto& m : members) {
      if (m.instance_id == id) return true;
    }
    return false;
  }

  // Polls the member list (through `s`) until `pred(members)` holds.
  template <typename Pred>
  bool MembersEventually(MetaStore& s, Pred pred) {
    const auto deadline = SteadyClock::now() + kPatience;
    while (SteadyClock::now() < deadline) {
      auto m = Members(s);
      if (m.ok() && pred(*m)) return true;
      // etcd's lease clock is real time; nothing to fake.
      std::this_thread::sleep_for(milliseconds(50));
    }
    return false;
  }

  // Runs the loop until `pred(stats)` holds for `s`.
  template <typename Pred>
  bool StatsEventually(const EtcdMetaStore& s, Pred pred) {
    return loop_.RunUntil([&] { return pred(s.stats()); });
  }

  const std::thread::id loop_thread_ = std::this_thread::get_id();
  ManualLoop loop_;  // before the stores: they post to it until destroyed
  std::unique_ptr<EtcdProcess> etcd_;
  std::unique_ptr<etcd::EtcdClient> raw_;  // the test's own view of etcd
  int counter_ = 0;
  bool stopped_etcd_ = false;
};

// Waits until every thread of `pid` is stopped (SIGSTOP takes effect
// asynchronously: a thread on a CPU stops on its way back to user space).
bool AllThreadsStopped(pid_t pid) {
  const std::string tasks = "/proc/" + std::to_string(pid) + "/task";
  const auto deadline = SteadyClock::now() + kPatience;
  while (SteadyClock::now() < deadline) {
    bool all = true;
    for (const auto& task : std::filesystem::directory_iterator(tasks)) {
      std::ifstream stat(task.path() / "stat");
      std::string text((std::istreambuf_iterator<char>(stat)), {});
      // "pid (comm) S ...": the state follows the last ')'.
      size_t paren = text.rfind(')');
      if (paren == std::string::npos || paren + 2 >= text.size() ||
          text[paren + 2] != 'T') {
        all = false;
      }
    }
    if (all) return true;
    std::this_thread::sleep_for(milliseconds(1));
  }
  return false;
}

const ObjectID kA = ObjectID::Make(1, 1);
const ObjectID kB = ObjectID::Make(2, 7);

TEST(EtcdMetaStoreMake, RejectsBadOptions) {
  ManualLoop loop;
  auto make = [&](EtcdMetaStoreOptions o) {
    return EtcdMetaStore::Make(std::move(o), loop.poster()).status();
  };
  EtcdMetaStoreOptions good;
  good.endpoints = {"127.0.0.1:1"};
  EXPECT_TRUE(make(good).ok());
  EXPECT_TRUE(EtcdMetaStore::Make(good, nullptr).status().IsInvalid());
  auto o = good;
  o.endpoints.clear();
  EXPECT_TRUE(make(o).IsInvalid());
  o = good;
  o.cluster = "a/b";
  EXPECT_TRUE(make(o).IsInvalid());
  o.cluster = "";
  EXPECT_TRUE(make(o).IsInvalid());
  o = good;
  o.keepalive_interval = o.lease_ttl;
  EXPECT_TRUE(make(o).IsInvalid());
  o = good;
  o.workers = 0;
  EXPECT_TRUE(make(o).IsInvalid());
}

TEST_F(EtcdMetaStoreTest, RegisterAssignsDistinctIdsNeverReused) {
  uint16_t a = 0, b = 0, c = 0;
  auto sa = Join(Options(), &a);
  auto sb = Join(Options(), &b);
  ASSERT_TRUE(sa && sb);
  EXPECT_EQ(a, 1);
  EXPECT_EQ(b, 2);
  EXPECT_EQ(sa->backend(), "etcd");
  EXPECT_EQ(sa->cluster_name(), "test");
  EXPECT_EQ(sa->stats().instance_id, a);
  auto members = Members(*sb);
  ASSERT_TRUE(members.ok()) << members.status();
  ASSERT_EQ(members->size(), 2u);
  EXPECT_EQ((*members)[0].instance_id, a);
  EXPECT_EQ((*members)[0].hostname, "host-0");
  EXPECT_EQ((*members)[0].ipc_socket, "/tmp/sock-host-0");
  EXPECT_EQ((*members)[0].arena_size, 64u << 20);
  EXPECT_EQ((*members)[1].instance_id, b);
  // The key layout of cluster-design.md.
  auto key = raw_->Get("/trellis/test/instances/1");
  ASSERT_TRUE(key.ok() && key->has_value());
  EXPECT_NE((*key)->lease, 0);
  EXPECT_EQ((*raw_->Get("/trellis/test/next_instance"))->value, "3");

  // A second Register is refused.
  auto again = Await<uint16_t>(
      [&](auto done) { sa->Register(InstanceInfo{}, std::move(done)); });
  EXPECT_TRUE(again.status().IsInvalid()) << again.status();

  // A closed instance leaves at once (its lease is revoked); its id is not
  // handed out again.
  sa.reset();
  members = Members(*sb);
  ASSERT_TRUE(members.ok());
  EXPECT_FALSE(HasMember(*members, a));
  auto sc = Join(Options(), &c);
  EXPECT_EQ(c, 3);
  // Another cluster name on the same etcd counts from 1.
  uint16_t other = 0;
  auto so = Join(Options("other"), &other);
  EXPECT_EQ(other, 1);
}

TEST_F(EtcdMetaStoreTest, InstanceIdsRunOutWithAClearError) {
  ASSERT_TRUE(raw_->Put("/trellis/test/next_instance", "65535").ok());
  uint16_t last = 0;
  auto s1 = Join(Options(), &last);
  EXPECT_EQ(last, 65535);
  auto s2 = Make(Options());
  auto got = Await<uint16_t>(
      [&](auto done) { s2->Register(InstanceInfo{}, std::move(done)); });
  ASSERT_TRUE(got.status().IsInvalid()) << got.status();
  EXPECT_NE(got.status().message().find("all 65535 instance ids"),
            std::string::npos)
      << got.status();
}

TEST_F(EtcdMetaStoreTest, NamesAreClusterWide) {
  uint16_t a = 0, b = 0;
  auto sa = Join(Options(), &a);
  auto sb = Join(Options(), &b);
  ASSERT_TRUE(sa && sb);
  ASSERT_TRUE(Put(*sa, "x", kA).ok());
  auto got = Get(*sb, "x");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, kA);
  EXPECT_EQ((*raw_->Get("/trellis/test/names/x"))->value, kA.ToString());

  // overwrite=false on a bound name fails and names the holder; true rebinds.
  Status taken = Put(*sb, "x", kB, /*overwrite=*/false);
  EXPECT_TRUE(taken.IsObjectExists()) << taken;
  EXPECT_NE(taken.message().find(kA.ToString()), std::string::npos) << taken;
  ASSERT_TRUE(Put(*sb, "x", kB).ok());
  EXPECT_EQ(*Get(*sa, "x"), kB);

  // Errors of the contract.
  EXPECT_TRUE(Get(*sa, "nope").status().IsObjectNotFound());
  EXPECT_TRUE(Get(*sa, "").status().IsObjectNotFound());
  EXPECT_TRUE(Put(*sa, "", kA).IsInvalid());
  EXPECT_TRUE(AwaitStatus([&](auto done) {
                sa->DropName("nope", std::move(done));
              }).IsObjectNotFound());

  // ListNames: glob, sorted, limited; names with '/' are names like others.
  for (const char* n : {"a/1", "a/2", "ab", "b"}) {
    ASSERT_TRUE(Put(*sa, n, kA).ok());
  }
  auto listed = List(*sb, "a*");
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 3u);
  EXPECT_EQ((*listed)[0].first, "a/1");
  EXPECT_EQ((*listed)[1].first, "a/2");
  EXPECT_EQ((*listed)[2].first, "ab");
  EXPECT_EQ((*listed)[2].second, kA);
  EXPECT_EQ(List(*sb, "*")->size(), 5u);
  EXPECT_EQ(List(*sb, "*", 2)->size(), 2u);
  EXPECT_EQ(List(*sb, "?")->size(), 2u);  // "b", "x"
  EXPECT_EQ(List(*sb, "a/[2]")->size(), 1u);

  // DropName, then DropNamesOf: only names bound to that id go.
  ASSERT_TRUE(
      AwaitStatus([&](auto done) { sb->DropName("b", std::move(done)); }).ok());
  EXPECT_TRUE(Get(*sa, "b").status().IsObjectNotFound());
  ASSERT_TRUE(AwaitStatus([&](auto done) {
                sa->DropNamesOf(kA, std::move(done));
              }).ok());
  listed = List(*sa, "*");
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0], std::make_pair(std::string("x"), kB));

  // DropNamesOf of several ids issued together: every call completes.
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(
        Put(*sa, "n" + std::to_string(i), ObjectID::Make(1, 100 + i)).ok());
  }
  int completed = 0;
  for (int i = 0; i < 4; ++i) {
    sa->DropNamesOf(ObjectID::Make(1, 100 + i), [&](Status st) {
      EXPECT_TRUE(st.ok()) << st;
      ++completed;
    });
  }
  ASSERT_TRUE(loop_.RunUntil([&] { return completed == 4; }));
  listed = List(*sb, "n*");
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].first, "n4");

  // Another cluster on the same etcd sees none of it.
  uint16_t o = 0;
  auto other = Join(Options("other"), &o);
  EXPECT_TRUE(Get(*other, "x").status().IsObjectNotFound());
  EXPECT_EQ(List(*other, "*")->size(), 0u);
}

TEST_F(EtcdMetaStoreTest, DropNamesOfCoversNamesTheWatchSawBoundToOurObjects) {
  Heard heard_a;
  uint16_t a = 0, b = 0;
  auto sa = Join(Options(), &a, &heard_a);
  auto sb = Join(Options(), &b);
  ASSERT_TRUE(sa && sb);
  const ObjectID ours = ObjectID::Make(a, 5);
  // Bound by another store (the daemon never does that today, its names
  // are of its own objects): the holder learns of it from its watch.
  ASSERT_TRUE(Put(*sb, "theirs", ours).ok());
  ASSERT_TRUE(loop_.RunUntil([&] { return heard_a.Has("theirs", ours); }));
  ASSERT_TRUE(AwaitStatus([&](auto done) {
                sa->DropNamesOf(ours, std::move(done));
              }).ok());
  EXPECT_TRUE(Get(*sb, "theirs").status().IsObjectNotFound());
}

TEST_F(EtcdMetaStoreTest, UnnamedAndUnpublishedIdsNeedNoEtcd) {
  uint16_t a = 0;
  auto sa = Join(Options(), &a);
  ASSERT_TRUE(sa);
  ASSERT_TRUE(Put(*sa, "named", kA).ok());
  ASSERT_TRUE(etcd_->Kill().ok());
  // Objects that were never named or published are deleted without etcd:
  // their completions run inside the call.
  const ObjectID plain = ObjectID::Make(a, 99);
  std::optional<Status> dropped, unpublished;
  sa->DropNamesOf(plain, [&](Status st) { dropped = st; });
  sa->Unpublish(plain, [&](Status st) { unpublished = st; });
  ASSERT_TRUE(dropped && unpublished);
  EXPECT_TRUE(dropped->ok()) << *dropped;
  EXPECT_TRUE(unpublished->ok()) << *unpublished;
  // A named one needs etcd, and says so.
  Status st =
      AwaitStatus([&](auto done) { sa->DropNamesOf(kA, std::move(done)); });
  EXPECT_TRUE(st.IsDisconnected()) << st;
  ASSERT_TRUE(etcd_->Restart().ok());
  EXPECT_TRUE(AwaitStatus([&](auto done) {
                sa->DropNamesOf(kA, std::move(done));
              }).ok());
  EXPECT_TRUE(Get(*sa, "named").status().IsObjectNotFound());
}

TEST_F(EtcdMetaStoreTest, OverwriteFalseRaceHasExactlyOneWinner) {
  uint16_t a = 0, b = 0;
  auto sa = Join(Options(), &a);
  auto sb = Join(Options(), &b);
  ASSERT_TRUE(sa && sb);
  constexpr int kNames = 20;
  std::vector<std::optional<Status>> from_a(kNames), from_b(kNames);
  // Both stores' calls are queued before either runs: their workers race.
  for (int k = 0; k < kNames; ++k) {
    const std::string name = "race" + std::to_string(k);
    sa->PutName(name, kA, false, [&, k](Status st) { from_a[k] = st; });
    sb->PutName(name, kB, false, [&, k](Status st) { from_b[k] = st; });
  }
  ASSERT_TRUE(loop_.RunUntil([&] {
    for (int k = 0; k < kNames; ++k) {
      if (!from_a[k] || !from_b[k]) return false;
    }
    return true;
  }));
  for (int k = 0; k < kNames; ++k) {
    const Status &ra = *from_a[k], &rb = *from_b[k];
    ASSERT_TRUE(ra.ok() != rb.ok()) << k << ": " << ra << " / " << rb;
    const Status& loser = ra.ok() ? rb : ra;
    EXPECT_TRUE(loser.IsObjectExists()) << loser;
    auto bound = Get(*sa, "race" + std::to_string(k));
    ASSERT_TRUE(bound.ok());
    EXPECT_EQ(*bound, ra.ok() ? kA : kB);
  }
}

TEST_F(EtcdMetaStoreTest, BindingOnOneStoreWakesAnothersListener) {
  Heard heard_a, heard_b;
  uint16_t a = 0, b = 0;
  auto sa = Join(Options(), &a, &heard_a);
  auto sb = Join(Options(), &b, &heard_b);
  ASSERT_TRUE(sa && sb);
  // The binder's own listener hears it before its completion runs.
  bool done = false;
  sa->PutName("w", kA, true, [&](Status st) {
    EXPECT_TRUE(st.ok()) << st;
    EXPECT_TRUE(heard_a.Has("w", kA));
    done = true;
  });
  ASSERT_TRUE(loop_.RunUntil([&] { return done; }));
  // The other store hears it through its watch: nobody asked it anything.
  ASSERT_TRUE(loop_.RunUntil([&] { return heard_b.Has("w", kA); }));
  // A failed bind and a drop are not bindings.
  ASSERT_TRUE(Put(*sb, "w", kB, false).IsObjectExists());
  ASSERT_TRUE(
      AwaitStatus([&](auto d) { sb->DropName("w", std::move(d)); }).ok());
  ASSERT_TRUE(Put(*sb, "after", kB).ok());
  ASSERT_TRUE(loop_.RunUntil([&] { return heard_a.Has("after", kB); }));
  for (const auto& [name, id] : heard_a.names) {
    EXPECT_FALSE(name == "w" && id == kB);
  }
}

TEST_F(EtcdMetaStoreTest, PublishedTreesAreClusterWide) {
  uint16_t a = 0, b = 0;
  auto sa = Join(Options(), &a);
  auto sb = Join(Options(), &b);
  nlohmann::json tree = {
      {"typename", "Tensor"}, {"id", kA.value()}, {"shape", {2, 3}}};
  ASSERT_TRUE(
      AwaitStatus([&](auto d) { sa->Publish(kA, tree, std::move(d)); }).ok());
  auto got = Await<nlohmann::json>(
      [&](auto d) { sb->GetPublished(kA, std::move(d)); });
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, tree);
  EXPECT_TRUE(raw_->Get("/trellis/test/objects/" + kA.ToString())->has_value());
  ASSERT_TRUE(
      AwaitStatus([&](auto d) { sa->Unpublish(kA, std::move(d)); }).ok());
  got = Await<nlohmann::json>(
      [&](auto d) { sb->GetPublished(kA, std::move(d)); });
  EXPECT_TRUE(got.status().IsObjectNotFound()) << got.status();
  // Withdrawing what was never published is fine.
  EXPECT_TRUE(
      AwaitStatus([&](auto d) { sa->Unpublish(kB, std::move(d)); }).ok());
}

TEST_F(EtcdMetaStoreTest, ACrashedInstanceDropsOutWhenItsLeaseExpires) {
  uint16_t a = 0, b = 0;
  auto crash = Options();
  crash.revoke_on_close = false;  // no goodbye: as if the process died
  auto sa = Join(crash, &a);
  auto sb = Join(Options(), &b);
  ASSERT_TRUE(sa && sb);
  auto members = Members(*sb);
  ASSERT_TRUE(members.ok());
  ASSERT_TRUE(HasMember(*members, a));
  sa.reset();
  const auto crashed = SteadyClock::now();
  ASSERT_TRUE(
      MembersEventually(*sb, [&](const auto& m) { return !HasMember(m, a); }));
  const auto gone_after = SteadyClock::now() - crashed;
  EXPECT_LE(gone_after, crash.lease_ttl + seconds(1))
      << std::chrono::duration_cast<milliseconds>(gone_after).count() << " ms";
  members = Members(*sb);
  ASSERT_TRUE(members.ok());
  EXPECT_TRUE(HasMember(*members, b));
}

TEST_F(EtcdMetaStoreTest, KeepAlivesHoldTheMembershipPastTheTtl) {
  uint16_t a = 0, b = 0;
  auto sa = Join(Options(), &a);
  auto sb = Join(Options(), &b);
  ASSERT_TRUE(sa && sb);
  const auto lease = sa->stats().lease;
  // Two TTLs without any call: the keep-alives alone keep it (etcd's lease
  // clock is real time).
  std::this_thread::sleep_for(2 * Options().lease_ttl);
  auto members = Members(*sb);
  ASSERT_TRUE(members.ok());
  EXPECT_TRUE(HasMember(*members, a));
  EXPECT_EQ(sa->stats().lease, lease);
  EXPECT_EQ(sa->stats().lease_regrants, 0u);
  EXPECT_TRUE(sa->stats().lease_alive);
}

TEST_F(EtcdMetaStoreTest, ArenaUseReachesTheMemberList) {
  auto o = Options();
  o.usage_interval = milliseconds(0);
  uint16_t a = 0, b = 0;
  auto sa = Join(o, &a);
  auto sb = Join(Options(), &b);
  sa->UpdateUsage(12345);
  ASSERT_TRUE(MembersEventually(*sb, [&](const auto& m) {
    for (const auto& i : m) {
      if (i.instance_id == a) return i.arena_used == 12345;
    }
    return false;
  }));
  EXPECT_GE(sa->stats().usage_updates, 1u);
}

TEST_F(EtcdMetaStoreTest, ALostLeaseIsGrantedAgainWithTheSameId) {
  uint16_t a = 0, b = 0;
  auto sa = Join(Options(), &a);
  auto sb = Join(Options(), &b);
  ASSERT_TRUE(sa && sb);
  const std::string key = "/trellis/test/instances/" + std::to_string(a);
  auto kv = raw_->Get(key);
  ASSERT_TRUE(kv.ok() && kv->has_value());
  const int64_t old_lease = (*kv)->lease;
  EXPECT_EQ(old_lease, sa->stats().lease);
  // What etcd does to a lease nobody renewed for a TTL.
  ASSERT_TRUE(raw_->LeaseRevoke(old_lease).ok());
  ASSERT_FALSE(raw_->Get(key)->has_value());
  ASSERT_TRUE(
      MembersEventually(*sb, [&](const auto& m) { return HasMember(m, a); }));
  kv = raw_->Get(key);
  ASSERT_TRUE(kv.ok() && kv->has_value());
  EXPECT_NE((*kv)->lease, old_lease);
  EXPECT_NE((*kv)->lease, 0);
  // The counter moves just after the member key is written back.
  EXPECT_TRUE(StatsEventually(
      *sa, [](const auto& st) { return st.lease_regrants == 1u; }));
  EXPECT_EQ(sa->stats().instance_id, a);
  // Still one instance per id.
  auto members = Members(*sb);
  ASSERT_TRUE(members.ok());
  EXPECT_EQ(members->size(), 2u);
}

TEST_F(EtcdMetaStoreTest, EtcdKilledCallsFailClearlyAndRestartResumes) {
  Heard heard_b;
  uint16_t a = 0, b = 0;
  auto sa = Join(Options(), &a);
  auto sb = Join(Options(), &b, &heard_b);
  ASSERT_TRUE(sa && sb);
  ASSERT_TRUE(
      StatsEventually(*sb, [](const auto& s) { return s.watch_connected; }));
  ASSERT_TRUE(Put(*sa, "before", kA).ok());
  ASSERT_TRUE(etcd_->Kill().ok());

  // Every kind of call fails with an error naming etcd and the endpoint.
  auto expect_clear = [&](const Status& st, const std::string& what) {
    EXPECT_TRUE(st.IsDisconnected() || st.IsTimeout()) << st;
    EXPECT_NE(st.message().find(what), std::string::npos) << st;
    EXPECT_NE(st.message().find(etcd_->endpoint()), std::string::npos) << st;
  };
  expect_clear(Put(*sa, "during", kA), "cannot bind name 'during'");
  expect_clear(Get(*sa, "before").status(), "cannot look up name 'before'");
  expect_clear(List(*sa, "*").status(), "cannot list names");
  expect_clear(Members(*sa).status(), "cannot list the members");
  expect_clear(AwaitStatus([&](auto d) {
                 sa->Publish(kA, nlohmann::json::object(), std::move(d));
               }),
               "cannot publish");
  expect_clear(AwaitStatus([&](auto d) { sa->DropNamesOf(kA, std::move(d)); }),
               "cannot drop the names of");
  EXPECT_NE(Put(*sa, "during", kA).message().find("etcd unreachable"),
            std::string::npos);
  ASSERT_TRUE(StatsEventually(*sa, [](const auto& s) {
    return !s.lease_alive && s.keepalive_failures > 0;
  }));
  ASSERT_TRUE(
      StatsEventually(*sb, [](const auto& s) { return !s.watch_connected; }));

  ASSERT_TRUE(etcd_->Restart().ok());
  // Registration is back with the same ids (the lease survived the restart
  // or was granted again), the keep-alives succeed, the watch resumed.
  ASSERT_TRUE(
      StatsEventually(*sa, [](const auto& s) { return s.lease_alive; }));
  ASSERT_TRUE(MembersEventually(*sb, [&](const auto& m) {
    return HasMember(m, a) && HasMember(m, b) && m.size() == 2;
  }));
  ASSERT_TRUE(Put(*sa, "after", kA).ok());
  ASSERT_TRUE(loop_.RunUntil([&] { return heard_b.Has("after", kA); }));
  EXPECT_TRUE(sb->stats().watch_connected);
  // Replayed from where the watch stopped, not re-read.
  EXPECT_EQ(sb->stats().watch_resyncs, 0u);
  EXPECT_EQ(*Get(*sb, "before"), kA);
}

TEST_F(EtcdMetaStoreTest, BindingsMadeWhileTheWatchWasAwayWakeAfterResync) {
  Heard heard_b;
  uint16_t a = 0, b = 0;
  auto sa = Join(Options(), &a);
  auto slow = Options();
  // B's watch retries only every 5 s, so that the history it needs is
  // compacted before it is back.
  slow.watch_backoff_min = slow.watch_backoff_max = seconds(5);
  auto sb = Join(slow, &b, &heard_b);
  ASSERT_TRUE(sa && sb);
  ASSERT_TRUE(
      StatsEventually(*sb, [](const auto& s) { return s.watch_connected; }));
  ASSERT_TRUE(etcd_->Kill().ok());
  ASSERT_TRUE(
      StatsEventually(*sb, [](const auto& s) { return !s.watch_connected; }));
  ASSERT_TRUE(etcd_->Restart().ok());
  ASSERT_TRUE(Put(*sa, "while-away", kA).ok());
  // Compacted past the binding: B's watch cannot replay it.
  auto later = raw_->Put("/elsewhere", "x");
  ASSERT_TRUE(later.ok());
  ASSERT_TRUE(raw_->Compact(*later).ok());
  ASSERT_FALSE(sb->stats().watch_connected)
      << "B's watch came back before the compaction: this machine is too "
         "slow for the test's 5 s backoff";
  EXPECT_FALSE(heard_b.Has("while-away", kA));
  ASSERT_TRUE(loop_.RunUntil([&] { return heard_b.Has("while-away", kA); }));
  EXPECT_GE(sb->stats().watch_compactions, 1u);
  EXPECT_GE(sb->stats().watch_resyncs, 1u);
}

TEST_F(EtcdMetaStoreTest, AHungEtcdFailsQueuedCallsWithinTwiceTheTimeout) {
  uint16_t a = 0;
  auto o = Options();
  o.timeout = milliseconds(400);
  auto sa = Join(o, &a);
  ASSERT_TRUE(sa);
  // Accepts connections, never answers.
  ASSERT_EQ(kill(etcd_->pid(), SIGSTOP), 0);
  stopped_etcd_ = true;
  ASSERT_TRUE(AllThreadsStopped(etcd_->pid()));
  constexpr int kCalls = 8;
  std::vector<std::optional<Status>> got(kCalls);
  const auto start = SteadyClock::now();
  for (int i = 0; i < kCalls; ++i) {
    sa->GetName("x", [&, i](Result<ObjectID> r) { got[i] = r.status(); });
  }
  ASSERT_TRUE(loop_.RunUntil([&] {
    for (const auto& g : got) {
      if (!g) return false;
    }
    return true;
  }));
  const auto took = SteadyClock::now() - start;
  for (const auto& g : got) {
    EXPECT_TRUE(g->IsTimeout()) << *g;
    EXPECT_NE(g->message().find(etcd_->endpoint()), std::string::npos) << *g;
  }
  // Two workers: without the queue deadline 8 calls would take 4 timeouts.
  EXPECT_LT(took, 2 * o.timeout + milliseconds(1000))
      << std::chrono::duration_cast<milliseconds>(took).count() << " ms";
  kill(etcd_->pid(), SIGCONT);
  stopped_etcd_ = false;
  EXPECT_TRUE(Get(*sa, "x").status().IsObjectNotFound());
}

TEST_F(EtcdMetaStoreTest, DestructionDropsPendingCompletions) {
  uint16_t a = 0;
  auto sa = Join(Options(), &a);
  ASSERT_TRUE(sa);
  int called = 0;
  for (int i = 0; i < 10; ++i) {
    sa->GetName("x", [&](Result<ObjectID>) { ++called; });
    sa->PutName("y" + std::to_string(i), kA, true, [&](Status) { ++called; });
  }
  sa.reset();  // the threads are joined: whatever they posted is queued
  loop_.RunPending();
  EXPECT_EQ(called, 0);
}

}  // namespace
}  // namespace trellis::server
