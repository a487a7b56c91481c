// EtcdClient against a real etcd server (testing::EtcdProcess), no mocks.

#include "server/etcd_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "testing/etcd.h"

namespace trellis::etcd {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using testing::EtcdProcess;

// Bound on waiting for something etcd does by itself (a watch event, a
// reconnection): generous, a test only waits that long when it fails.
constexpr auto kPatience = seconds(20);

class EtcdClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto etcd = EtcdProcess::Start();
    ASSERT_TRUE(etcd.ok()) << etcd.status();
    etcd_ = std::move(*etcd);
    client_ = MakeClient({etcd_->endpoint()});
  }

  static std::unique_ptr<EtcdClient> MakeClient(
      std::vector<std::string> endpoints, milliseconds timeout = seconds(2)) {
    EtcdOptions options;
    options.endpoints = std::move(endpoints);
    options.timeout = timeout;
    auto c = EtcdClient::Make(options);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  std::unique_ptr<EtcdProcess> etcd_;
  std::unique_ptr<EtcdClient> client_;
};

// Collects what a watch delivers; the test thread waits on it.
struct Recorder {
  void OnEvents(const std::vector<WatchEvent>& batch) {
    std::lock_guard<std::mutex> lock(mu);
    events.insert(events.end(), batch.begin(), batch.end());
    cv.notify_all();
  }
  void OnState(const WatchState& s) {
    std::lock_guard<std::mutex> lock(mu);
    states.push_back(s);
    cv.notify_all();
  }
  // Waits until `pred` (called under the lock) holds; false after kPatience.
  template <typename Pred>
  bool WaitFor(Pred pred) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, kPatience, pred);
  }
  size_t CountStates(WatchState::Kind kind) {
    size_t n = 0;
    for (const auto& s : states) n += s.kind == kind;
    return n;
  }

  std::mutex mu;
  std::condition_variable cv;
  std::vector<WatchEvent> events;  // guarded by mu
  std::vector<WatchState> states;  // guarded by mu
};

std::unique_ptr<EtcdWatch> StartWatch(EtcdClient& c, const std::string& prefix,
                                      int64_t start, Recorder& rec) {
  auto w = c.Watch(
      prefix, start, [&](const auto& b) { rec.OnEvents(b); },
      [&](const auto& s) { rec.OnState(s); });
  EXPECT_TRUE(w.ok()) << w.status();
  return w.ok() ? std::move(*w) : nullptr;
}

// The store revision now (a write after it gets a larger one).
int64_t Revision(EtcdClient& c) {
  auto r = c.GetPrefix("\x01revision-probe");
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? r->revision : 0;
}

TEST(Base64, RoundTripsEveryLengthAndByte) {
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  for (size_t n = 0; n <= all.size(); n += 1) {
    std::string s = all.substr(0, n);
    auto back = Base64Decode(Base64Encode(s));
    ASSERT_TRUE(back.ok()) << back.status();
    ASSERT_EQ(*back, s);
  }
  EXPECT_EQ(Base64Encode("foo"), "Zm9v");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(Base64Encode("f"), "Zg==");
  EXPECT_TRUE(Base64Decode("Zm9").status().IsInvalid());
  EXPECT_TRUE(Base64Decode("Zm*v").status().IsInvalid());
  EXPECT_TRUE(Base64Decode("Z=9v").status().IsInvalid());
}

TEST(PrefixRangeEnd, IncrementsTheLastByteThatCan) {
  EXPECT_EQ(PrefixRangeEnd("a/"), "a0");
  EXPECT_EQ(PrefixRangeEnd(std::string("a\xff", 2)), "b");
  EXPECT_EQ(PrefixRangeEnd(std::string("\xff\xff", 2)), std::string(1, '\0'));
  EXPECT_EQ(PrefixRangeEnd(""), std::string(1, '\0'));
}

TEST(EtcdClientMake, RejectsBadOptions) {
  EXPECT_TRUE(EtcdClient::Make({}).status().IsInvalid());
  EtcdOptions o;
  o.endpoints = {""};
  EXPECT_TRUE(EtcdClient::Make(o).status().IsInvalid());
  o.endpoints = {"127.0.0.1:1"};
  o.timeout = milliseconds(0);
  EXPECT_TRUE(EtcdClient::Make(o).status().IsInvalid());
}

TEST_F(EtcdClientTest, PutGetDeleteWithBinaryKeysAndValues) {
  const std::string key("k\0\xff/1", 5);
  const std::string value("v\0\x80\xfe", 4);
  auto rev = client_->Put(key, value);
  ASSERT_TRUE(rev.ok()) << rev.status();
  auto got = client_->Get(key);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->key, key);
  EXPECT_EQ((*got)->value, value);
  EXPECT_EQ((*got)->mod_revision, *rev);
  EXPECT_EQ((*got)->create_revision, *rev);
  EXPECT_EQ((*got)->version, 1);

  auto rev2 = client_->Put(key, "second");
  ASSERT_TRUE(rev2.ok());
  EXPECT_GT(*rev2, *rev);
  got = client_->Get(key);
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->value, "second");
  EXPECT_EQ((*got)->create_revision, *rev);
  EXPECT_EQ((*got)->mod_revision, *rev2);
  EXPECT_EQ((*got)->version, 2);

  auto deleted = client_->Delete(key);
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 1);
  deleted = client_->Delete(key);
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 0);
  got = client_->Get(key);
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(got->has_value());
}

TEST_F(EtcdClientTest, GetPrefixAndDeletePrefix) {
  for (const char* k : {"a/2", "a/1", "a/3", "b/1", "a"}) {
    ASSERT_TRUE(client_->Put(k, std::string("v") + k).ok());
  }
  auto all = client_->GetPrefix("a/");
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->kvs.size(), 3u);
  EXPECT_EQ(all->kvs[0].key, "a/1");
  EXPECT_EQ(all->kvs[1].key, "a/2");
  EXPECT_EQ(all->kvs[2].key, "a/3");
  EXPECT_EQ(all->kvs[2].value, "va/3");
  EXPECT_FALSE(all->more);
  EXPECT_EQ(all->revision, Revision(*client_));

  auto two = client_->GetPrefix("a/", 2);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(two->kvs.size(), 2u);
  EXPECT_TRUE(two->more);

  auto everything = client_->GetPrefix("");
  ASSERT_TRUE(everything.ok());
  EXPECT_EQ(everything->kvs.size(), 5u);

  auto n = client_->DeletePrefix("a/");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 3);
  auto left = client_->GetPrefix("");
  ASSERT_TRUE(left.ok());
  ASSERT_EQ(left->kvs.size(), 2u);
  EXPECT_EQ(left->kvs[0].key, "a");
  EXPECT_EQ(left->kvs[1].key, "b/1");
}

TEST_F(EtcdClientTest, PutIfAbsentCreatesOnlyOnce) {
  auto first = client_->PutIfAbsent("name/x", "one");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(*first);
  auto second = client_->PutIfAbsent("name/x", "two");
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(*second);
  auto got = client_->Get("name/x");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->value, "one");
}

TEST_F(EtcdClientTest, PutIfAbsentRaceHasExactlyOneWinnerPerKey) {
  constexpr int kKeys = 40;
  std::vector<int> wins[2];
  auto racer = [&](int who) {
    for (int k = 0; k < kKeys; ++k) {
      auto r = client_->PutIfAbsent("race/" + std::to_string(k),
                                    "thread" + std::to_string(who));
      ASSERT_TRUE(r.ok()) << r.status();
      if (*r) wins[who].push_back(k);
    }
  };
  std::thread a(racer, 0), b(racer, 1);
  a.join();
  b.join();
  std::set<int> winners;
  for (int who = 0; who < 2; ++who) {
    for (int k : wins[who]) {
      EXPECT_TRUE(winners.insert(k).second) << "key " << k << " won twice";
      auto got = client_->Get("race/" + std::to_string(k));
      ASSERT_TRUE(got.ok() && got->has_value());
      EXPECT_EQ((*got)->value, "thread" + std::to_string(who));
    }
  }
  EXPECT_EQ(winners.size(), static_cast<size_t>(kKeys));
}

TEST_F(EtcdClientTest, CompareAndSwapCounterFromTwoThreads) {
  constexpr int kIncrements = 30;
  auto incrementer = [&] {
    for (int i = 0; i < kIncrements; ++i) {
      auto cur = client_->Get("counter");
      ASSERT_TRUE(cur.ok()) << cur.status();
      std::optional<KeyValue> kv = *cur;
      for (;;) {
        int64_t value = kv ? std::stoll(kv->value) : 0;
        auto r = client_->CompareAndSwap("counter", kv ? kv->mod_revision : 0,
                                         std::to_string(value + 1));
        ASSERT_TRUE(r.ok()) << r.status();
        if (r->swapped) break;
        kv = r->current;  // lost the race: retry on what is there now
      }
    }
  };
  std::thread a(incrementer), b(incrementer);
  a.join();
  b.join();
  auto got = client_->Get("counter");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->value, std::to_string(2 * kIncrements));
}

TEST_F(EtcdClientTest, CompareAndSwapOnStaleRevisionFailsAndShowsCurrent) {
  auto r0 = client_->Put("k", "a");
  ASSERT_TRUE(r0.ok());
  auto r1 = client_->Put("k", "b");
  ASSERT_TRUE(r1.ok());
  auto cas = client_->CompareAndSwap("k", *r0, "c");
  ASSERT_TRUE(cas.ok()) << cas.status();
  EXPECT_FALSE(cas->swapped);
  ASSERT_TRUE(cas->current.has_value());
  EXPECT_EQ(cas->current->value, "b");
  EXPECT_EQ(cas->current->mod_revision, *r1);
  // Expecting "absent" on a present key fails too; on an absent key it works.
  cas = client_->CompareAndSwap("k", 0, "c");
  ASSERT_TRUE(cas.ok());
  EXPECT_FALSE(cas->swapped);
  cas = client_->CompareAndSwap("fresh", 0, "c");
  ASSERT_TRUE(cas.ok());
  EXPECT_TRUE(cas->swapped);
  EXPECT_FALSE(cas->current.has_value());
  cas = client_->CompareAndSwap("k", *r1, "c");
  ASSERT_TRUE(cas.ok());
  EXPECT_TRUE(cas->swapped);
  EXPECT_GT(cas->revision, *r1);
}

TEST_F(EtcdClientTest, DeleteIfUnchangedOnlyDeletesTheRevisionRead) {
  auto r0 = client_->Put("k", "a");
  ASSERT_TRUE(r0.ok());
  auto r1 = client_->Put("k", "b");
  ASSERT_TRUE(r1.ok());
  auto stale = client_->DeleteIfUnchanged("k", *r0);
  ASSERT_TRUE(stale.ok()) << stale.status();
  EXPECT_FALSE(*stale);
  auto got = client_->Get("k");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->value, "b");
  auto current = client_->DeleteIfUnchanged("k", *r1);
  ASSERT_TRUE(current.ok()) << current.status();
  EXPECT_TRUE(*current);
  got = client_->Get("k");
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(got->has_value());
  // Gone, or re-created at a new revision: nothing to delete for r1.
  auto again = client_->DeleteIfUnchanged("k", *r1);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(*again);
  ASSERT_TRUE(client_->Put("k", "c").ok());
  again = client_->DeleteIfUnchanged("k", *r1);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(*again);
  EXPECT_FALSE(*client_->DeleteIfUnchanged("absent", 0));
}

TEST_F(EtcdClientTest, LeaseKeepAliveRevokeAndMissingLease) {
  auto lease = client_->LeaseGrant(30);
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_TRUE(client_->Put("member/a", "x", *lease).ok());
  auto got = client_->Get("member/a");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->lease, *lease);
  auto ttl = client_->LeaseKeepAliveOnce(*lease);
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_EQ(*ttl, 30);

  ASSERT_TRUE(client_->LeaseRevoke(*lease).ok());
  got = client_->Get("member/a");
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(got->has_value()) << "revoking the lease deletes its keys";
  EXPECT_TRUE(client_->LeaseKeepAliveOnce(*lease).status().IsObjectNotFound());
  EXPECT_TRUE(client_->LeaseRevoke(*lease).IsObjectNotFound());
  EXPECT_TRUE(
      client_->Put("member/b", "x", *lease).status().IsObjectNotFound());
  EXPECT_TRUE(client_->LeaseGrant(0).status().IsInvalid());
}

TEST_F(EtcdClientTest, ExpiredLeaseRemovesItsKeys) {
  auto lease = client_->LeaseGrant(1);
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_TRUE(client_->Put("member/short", "x", *lease).ok());
  ASSERT_TRUE(client_->Put("member/stays", "y").ok());
  // etcd raises a TTL below its minimum (~1.5 s for the default election
  // timeout); the key must be gone within that, with slack for the check.
  auto deadline = std::chrono::steady_clock::now() + seconds(10);
  bool gone = false;
  while (!gone && std::chrono::steady_clock::now() < deadline) {
    auto got = client_->Get("member/short");
    ASSERT_TRUE(got.ok()) << got.status();
    gone = !got->has_value();
    if (!gone) std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_TRUE(gone);
  EXPECT_TRUE(client_->LeaseKeepAliveOnce(*lease).status().IsObjectNotFound());
  auto stays = client_->Get("member/stays");
  ASSERT_TRUE(stays.ok());
  EXPECT_TRUE(stays->has_value());
}

TEST_F(EtcdClientTest, CompactedRevisionsAreRefused) {
  ASSERT_TRUE(client_->Put("k", "1").ok());
  auto rev = client_->Put("k", "2");
  ASSERT_TRUE(rev.ok());
  ASSERT_TRUE(client_->Compact(*rev).ok());
  EXPECT_TRUE(client_->Compact(*rev - 1).IsInvalid());
  EXPECT_TRUE(client_->Compact(*rev + 1000).IsInvalid());
}

TEST_F(EtcdClientTest, DownEndpointFailsFastWithAClearError) {
  const std::string endpoint = etcd_->endpoint();
  ASSERT_TRUE(etcd_->Kill().ok());
  Status st = client_->Put("k", "v").status();
  EXPECT_TRUE(st.IsDisconnected()) << st;
  EXPECT_NE(st.message().find(endpoint), std::string::npos) << st;
  EXPECT_TRUE(client_->Get("k").status().IsDisconnected());
  EXPECT_TRUE(client_->LeaseGrant(5).status().IsDisconnected());
  // The same client works again once etcd is back, with the data kept.
  ASSERT_TRUE(etcd_->Restart().ok());
  ASSERT_TRUE(client_->Put("k", "v").ok());
  auto got = client_->Get("k");
  ASSERT_TRUE(got.ok() && got->has_value()) << got.status();
}

// A listener that never accepts: connections complete (backlog) but nothing
// ever answers, as with a hung etcd.
class BlackHole {
 public:
  BlackHole() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr = {};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(fd_, 16), 0);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    endpoint_ = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  }
  ~BlackHole() { close(fd_); }
  const std::string& endpoint() const { return endpoint_; }

 private:
  int fd_;
  std::string endpoint_;
};

TEST_F(EtcdClientTest, HungEndpointTimesOutNamingIt) {
  BlackHole hole;
  auto c = MakeClient({hole.endpoint()}, milliseconds(300));
  Status st = c->Get("k").status();
  EXPECT_TRUE(st.IsTimeout()) << st;
  EXPECT_NE(st.message().find(hole.endpoint()), std::string::npos) << st;
}

TEST_F(EtcdClientTest, TriesTheNextEndpointWhenOneRefuses) {
  auto dead_port = testing::FreeTcpPort();
  ASSERT_TRUE(dead_port.ok());
  const std::string dead = "127.0.0.1:" + std::to_string(*dead_port);
  auto c = MakeClient({dead, etcd_->endpoint()});
  ASSERT_TRUE(c->Put("k", "v").ok());
  auto got = c->Get("k");
  ASSERT_TRUE(got.ok() && got->has_value()) << got.status();

  auto only_dead = MakeClient({dead, dead});
  Status st = only_dead->Get("k").status();
  EXPECT_TRUE(st.IsDisconnected()) << st;
  EXPECT_NE(st.message().find("unreachable"), std::string::npos) << st;
  EXPECT_NE(st.message().find(dead), std::string::npos) << st;

  // A watch rotates through the endpoints too.
  Recorder rec;
  int64_t start = Revision(*c) + 1;
  auto w = StartWatch(*c, "w/", start, rec);
  ASSERT_TRUE(c->Put("w/1", "x").ok());
  EXPECT_TRUE(rec.WaitFor([&] { return rec.events.size() == 1; }));
}

TEST_F(EtcdClientTest, WatchDeliversPutsAndDeletesInOrder) {
  Recorder rec;
  int64_t start = Revision(*client_) + 1;
  auto w = StartWatch(*client_, "w/", start, rec);
  ASSERT_TRUE(client_->Put("w/a", "1").ok());
  ASSERT_TRUE(client_->Put("other", "ignored").ok());
  ASSERT_TRUE(client_->Put("w/b", "2").ok());
  ASSERT_TRUE(client_->Delete("w/a").ok());
  ASSERT_TRUE(client_->Put("w/b", "3").ok());
  ASSERT_TRUE(rec.WaitFor([&] { return rec.events.size() >= 4; }));
  w->Stop();
  ASSERT_EQ(rec.events.size(), 4u);
  const auto& e = rec.events;
  EXPECT_EQ(e[0].type, WatchEvent::Type::kPut);
  EXPECT_EQ(e[0].kv.key, "w/a");
  EXPECT_EQ(e[0].kv.value, "1");
  EXPECT_EQ(e[1].kv.key, "w/b");
  EXPECT_EQ(e[2].type, WatchEvent::Type::kDelete);
  EXPECT_EQ(e[2].kv.key, "w/a");
  EXPECT_EQ(e[3].type, WatchEvent::Type::kPut);
  EXPECT_EQ(e[3].kv.value, "3");
  for (size_t i = 1; i < e.size(); ++i) {
    EXPECT_GT(e[i].kv.mod_revision, e[i - 1].kv.mod_revision);
  }
  EXPECT_EQ(e[0].kv.mod_revision, start);
  EXPECT_EQ(w->next_revision(), e[3].kv.mod_revision + 1);
  EXPECT_EQ(rec.CountStates(WatchState::Kind::kConnected), 1u);
  EXPECT_EQ(rec.CountStates(WatchState::Kind::kDisconnected), 0u);
}

TEST_F(EtcdClientTest, WatchFromNowSeesOnlyLaterWrites) {
  ASSERT_TRUE(client_->Put("w/old", "x").ok());
  Recorder rec;
  auto w = StartWatch(*client_, "w/", 0, rec);
  ASSERT_TRUE(rec.WaitFor([&] { return !rec.states.empty(); }));
  ASSERT_TRUE(client_->Put("w/new", "y").ok());
  ASSERT_TRUE(rec.WaitFor([&] { return rec.events.size() >= 1; }));
  w->Stop();
  ASSERT_EQ(rec.events.size(), 1u);
  EXPECT_EQ(rec.events[0].kv.key, "w/new");
}

TEST_F(EtcdClientTest, WatchReportsCompactionAndResumesAtCompactRevision) {
  ASSERT_TRUE(client_->Put("w/a", "1").ok());
  ASSERT_TRUE(client_->Put("w/a", "2").ok());
  auto rev = client_->Put("w/a", "3");
  ASSERT_TRUE(rev.ok());
  ASSERT_TRUE(client_->Compact(*rev).ok());
  Recorder rec;
  auto w = StartWatch(*client_, "w/", 1, rec);
  ASSERT_TRUE(rec.WaitFor(
      [&] { return rec.CountStates(WatchState::Kind::kCompacted) == 1; }));
  ASSERT_TRUE(client_->Put("w/b", "4").ok());
  ASSERT_TRUE(rec.WaitFor([&] {
    return !rec.events.empty() && rec.events.back().kv.key == "w/b";
  }));
  w->Stop();
  for (const auto& s : rec.states) {
    if (s.kind == WatchState::Kind::kCompacted) {
      EXPECT_EQ(s.compact_revision, *rev);
    }
  }
  // Resumed at the compact revision: the write there, then the new one.
  ASSERT_EQ(rec.events.size(), 2u);
  EXPECT_EQ(rec.events[0].kv.mod_revision, *rev);
  EXPECT_EQ(rec.events[0].kv.value, "3");
}

TEST_F(EtcdClientTest, WatchSurvivesEtcdKillAndRestartWithoutLossOrDuplicates) {
  Recorder rec;
  int64_t start = Revision(*client_) + 1;
  auto w = StartWatch(*client_, "w/", start, rec);
  ASSERT_TRUE(client_->Put("w/1", "before").ok());
  ASSERT_TRUE(rec.WaitFor([&] { return rec.events.size() == 1; }));

  ASSERT_TRUE(etcd_->Kill().ok());
  ASSERT_TRUE(rec.WaitFor(
      [&] { return rec.CountStates(WatchState::Kind::kDisconnected) == 1; }));
  {
    std::lock_guard<std::mutex> lock(rec.mu);
    EXPECT_EQ(rec.states.back().endpoint, etcd_->endpoint());
    EXPECT_TRUE(rec.states.back().error.IsDisconnected())
        << rec.states.back().error;
  }
  // While etcd is down calls fail with Disconnected, not after a timeout.
  Status st = client_->Put("w/x", "lost").status();
  EXPECT_TRUE(st.IsDisconnected()) << st;

  ASSERT_TRUE(etcd_->Restart().ok());
  // Written at once: the watch may or may not have reconnected yet; either
  // way it resumes after the last revision it delivered.
  ASSERT_TRUE(client_->Put("w/2", "after").ok());
  ASSERT_TRUE(client_->Put("w/3", "after").ok());
  ASSERT_TRUE(client_->Delete("w/1").ok());
  ASSERT_TRUE(rec.WaitFor([&] { return rec.events.size() >= 4; }));
  ASSERT_TRUE(rec.WaitFor(
      [&] { return rec.CountStates(WatchState::Kind::kConnected) == 2; }));
  ASSERT_TRUE(client_->Put("w/4", "later").ok());
  ASSERT_TRUE(rec.WaitFor([&] { return rec.events.size() >= 5; }));
  w->Stop();

  std::vector<std::string> keys;
  for (const auto& e : rec.events) keys.push_back(e.kv.key);
  EXPECT_EQ(keys,
            (std::vector<std::string>{"w/1", "w/2", "w/3", "w/1", "w/4"}));
  EXPECT_EQ(rec.events[3].type, WatchEvent::Type::kDelete);
  for (size_t i = 1; i < rec.events.size(); ++i) {
    EXPECT_GT(rec.events[i].kv.mod_revision, rec.events[i - 1].kv.mod_revision);
  }
  EXPECT_EQ(rec.CountStates(WatchState::Kind::kDisconnected), 1u)
      << "an outage is reported once, however many reconnections fail";
}

TEST_F(EtcdClientTest, StopIsPromptWhileEtcdIsDown) {
  // Backoff and timeouts far longer than the wait below: Stop must wake the
  // watch thread, not wait them out.
  EtcdOptions options;
  options.endpoints = {etcd_->endpoint()};
  options.timeout = seconds(120);
  options.watch_backoff_min = seconds(120);
  options.watch_backoff_max = seconds(120);
  auto c = EtcdClient::Make(options);
  ASSERT_TRUE(c.ok());
  Recorder rec;
  auto w = StartWatch(**c, "w/", 0, rec);
  ASSERT_TRUE(rec.WaitFor([&] { return !rec.states.empty(); }));
  ASSERT_TRUE(etcd_->Kill().ok());
  ASSERT_TRUE(rec.WaitFor(
      [&] { return rec.CountStates(WatchState::Kind::kDisconnected) == 1; }));
  auto stopped = std::async(std::launch::async, [&] { w->Stop(); });
  EXPECT_EQ(stopped.wait_for(seconds(30)), std::future_status::ready);
  stopped.wait();
}

TEST_F(EtcdClientTest, StopIsPromptOnAHungEndpoint) {
  BlackHole hole;
  EtcdOptions options;
  options.endpoints = {hole.endpoint()};
  options.timeout = seconds(120);
  auto c = EtcdClient::Make(options);
  ASSERT_TRUE(c.ok());
  Recorder rec;
  auto w = StartWatch(**c, "w/", 0, rec);
  auto stopped = std::async(std::launch::async, [&] { w->Stop(); });
  EXPECT_EQ(stopped.wait_for(seconds(30)), std::future_status::ready);
  stopped.wait();
  EXPECT_TRUE(rec.states.empty());
}

TEST_F(EtcdClientTest, WatchOutlivesItsClientAndRejectsBadArguments) {
  Recorder rec;
  int64_t start = Revision(*client_) + 1;
  auto w = StartWatch(*client_, "w/", start, rec);
  EXPECT_TRUE(client_->Watch("w/", 0, nullptr, nullptr).status().IsInvalid());
  EXPECT_TRUE(client_
                  ->Watch(
                      "w/", -1, [](const auto&) {}, nullptr)
                  .status()
                  .IsInvalid());
  auto other = MakeClient({etcd_->endpoint()});
  client_.reset();
  ASSERT_TRUE(other->Put("w/k", "v").ok());
  EXPECT_TRUE(rec.WaitFor([&] { return rec.events.size() == 1; }));
}

}  // namespace
}  // namespace trellis::etcd
