// Memory pressure end to end: a real trellisd with a spill directory, real
// client processes/threads, and every byte checked. The failure cases (a
// full or broken spill disk, slow writes, the races of file deletes) are
// unit tests of the store and the memory manager with fakes:
// store_test.cc, memory_manager_test.cc, spill_storage_test.cc.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "testing/daemon.h"
#include "trellis/client.h"

namespace trellis {
namespace {

using namespace std::chrono_literals;
using testing::DaemonProcess;

// Fills a buffer with bytes derived from (seed, index) so any corruption or
// mix-up between objects is detected.
void Fill(uint8_t* p, size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    std::memcpy(p + i, &v, 8);
  }
  for (; i < n; ++i) p[i] = static_cast<uint8_t>(rng());
}

bool Matches(const uint8_t* p, size_t n, uint64_t seed) {
  std::vector<uint8_t> want(n);
  Fill(want.data(), n, seed);
  return std::memcmp(p, want.data(), n) == 0;
}

size_t FilesIn(const std::string& dir) {
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    (void)e;
    ++n;
  }
  return n;
}

// The daemon deletes spill files it no longer needs on a worker thread, just
// after replying: waits (bounded) until `dir` holds `want` files.
size_t FilesInSoon(const std::string& dir, size_t want) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  size_t n = FilesIn(dir);
  while (n != want && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    n = FilesIn(dir);
  }
  return n;
}

class SpillTest : public ::testing::Test {
 protected:
  void StartDaemon(const std::string& size,
                   std::vector<std::string> extra = {}) {
    char tmpl[] = "/tmp/trellis-spill.XXXXXX";
    ASSERT_TRUE(mkdtemp(tmpl));
    spill_dir_ = tmpl;
    std::vector<std::string> args = {"--size", size, "--spill-dir", spill_dir_};
    args.insert(args.end(), extra.begin(), extra.end());
    auto d = DaemonProcess::Start(args);
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = std::move(*d);
    client_ = Connect();
  }

  void TearDown() override {
    client_.reset();
    daemon_.reset();  // SIGTERM: the daemon removes its spill files
    if (!spill_dir_.empty()) {
      std::error_code ec;
      EXPECT_EQ(FilesIn(spill_dir_), 0u) << "spill files left behind";
      std::filesystem::remove_all(spill_dir_, ec);
    }
  }

  std::unique_ptr<Client> Connect() {
    auto c = Client::Connect(daemon_->socket());
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  ObjectID Put(Client& c, size_t n, uint64_t seed) {
    auto w = c.CreateBlob(n);
    EXPECT_TRUE(w.ok()) << w.status();
    if (!w.ok()) return ObjectID();
    Fill((*w)->data(), n, seed);
    return *(*w)->Seal();
  }

  StoreStatus Stats() { return *client_->Status(); }

  std::string spill_dir_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<Client> client_;
};

TEST_F(SpillTest, PuttingThreeTimesTheArenaLosesNothing) {
  StartDaemon("32M");
  std::mt19937 rng(5);
  std::vector<std::pair<ObjectID, size_t>> objects;
  uint64_t total = 0;
  while (total < 3 * (32u << 20)) {
    size_t n = 1 + rng() % (2 << 20);
    objects.emplace_back(Put(*client_, n, objects.size()), n);
    ASSERT_TRUE(objects.back().first.valid());
    total += n;
  }
  StoreStatus s = Stats();
  EXPECT_GT(s.spilled_blobs, 0u);
  EXPECT_GT(s.spill_count, 0u);
  EXPECT_LE(s.used, s.arena_size);
  // A consumer in another connection reads every object back.
  auto consumer = Connect();
  for (size_t i = 0; i < objects.size(); ++i) {
    auto blob = consumer->GetBlob(objects[i].first);
    ASSERT_TRUE(blob.ok()) << i << ": " << blob.status();
    ASSERT_EQ(blob->size(), objects[i].second);
    ASSERT_TRUE(Matches(blob->data(), blob->size(), i)) << "object " << i;
  }
  s = Stats();
  EXPECT_GT(s.reload_count, 0u);
  EXPECT_EQ(s.blobs, objects.size());
}

TEST_F(SpillTest, HeldObjectsStayInMemoryAndIntact) {
  StartDaemon("16M");
  auto reader = Connect();
  ObjectID held_id = Put(*client_, 4 << 20, 99);
  auto held = reader->GetBlob(held_id);
  ASSERT_TRUE(held.ok());
  const uint8_t* where = held->data();
  for (int i = 0; i < 12; ++i) Put(*client_, 2 << 20, i);  // 24 MiB more
  EXPECT_GT(Stats().spilled_blobs, 0u);
  EXPECT_EQ(held->data(), where);
  EXPECT_TRUE(Matches(held->data(), 4 << 20, 99));
  EXPECT_GE(Stats().held_bytes, 4u << 20);
}

TEST_F(SpillTest, ConcurrentGetsOfOneSpilledObjectReloadItOnce) {
  StartDaemon("16M");
  ObjectID id = Put(*client_, 8 << 20, 7);
  ASSERT_TRUE(client_->Evict({id}).ok());
  StoreStatus before = Stats();
  ASSERT_EQ(before.spilled_blobs, 1u);
  std::atomic<int> good{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 8; ++t) {
    readers.emplace_back([&] {
      auto c = Client::Connect(daemon_->socket());
      if (!c.ok()) return;
      auto blob = (*c)->GetBlob(id);
      if (blob.ok() && Matches(blob->data(), blob->size(), 7)) good++;
    });
  }
  for (auto& r : readers) r.join();
  EXPECT_EQ(good.load(), 8);
  StoreStatus after = Stats();
  EXPECT_EQ(after.reload_count - before.reload_count, 1u);
  EXPECT_EQ(after.spilled_blobs, 0u);
  EXPECT_EQ(after.used, 8u << 20);  // one copy in memory, not eight
}

TEST_F(SpillTest, DeletingASpilledObjectRemovesItsFile) {
  StartDaemon("16M");
  ObjectID id = Put(*client_, 1 << 20, 3);
  auto evicted = client_->Evict({id});
  ASSERT_TRUE(evicted.ok()) << evicted.status();
  EXPECT_EQ(*evicted, 1u << 20);
  EXPECT_EQ(FilesIn(spill_dir_), 1u);
  EXPECT_EQ(Stats().used, 0u);
  ASSERT_TRUE(client_->Delete({id}).ok());
  EXPECT_EQ(FilesInSoon(spill_dir_, 0), 0u);
  StoreStatus s = Stats();
  EXPECT_EQ(s.spilled_blobs, 0u);
  EXPECT_EQ(s.blobs, 0u);
}

TEST_F(SpillTest, EvictRefusesHeldAndPinnedObjects) {
  StartDaemon("16M");
  ObjectID a = Put(*client_, 1 << 20, 1);
  ObjectID b = Put(*client_, 1 << 20, 2);
  auto held = client_->GetBlob(a);
  auto r = client_->Evict({a});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("held by 1 reader"), std::string::npos);
  ASSERT_TRUE(client_->Pin({b}).ok());
  EXPECT_NE(client_->Evict({b}).status().message().find("pinned"),
            std::string::npos);
  ASSERT_TRUE(client_->Unpin({b}).ok());
  EXPECT_TRUE(client_->Evict({b}).ok());
}

TEST_F(SpillTest, PinnedObjectsAreNeverSpilledAndPinReloads) {
  StartDaemon("16M");
  ObjectID pinned = Put(*client_, 4 << 20, 11);
  ObjectID cold = Put(*client_, 4 << 20, 12);
  ASSERT_TRUE(client_->Evict({cold}).ok());
  ASSERT_TRUE(client_->Pin({pinned, cold}).ok());  // reloads `cold`
  EXPECT_EQ(Stats().spilled_blobs, 0u);
  EXPECT_EQ(Stats().pinned_bytes, 8u << 20);
  // Pressure: only the new objects themselves can be spilled.
  for (int i = 0; i < 10; ++i) Put(*client_, 2 << 20, 100 + i);
  auto c = Connect();
  StoreStatus s = Stats();
  EXPECT_GT(s.spilled_blobs, 0u);
  EXPECT_EQ(s.pinned_bytes, 8u << 20);  // both still in memory
  EXPECT_TRUE(Matches(c->GetBlob(pinned)->data(), 4 << 20, 11));
  EXPECT_TRUE(Matches(c->GetBlob(cold)->data(), 4 << 20, 12));
}

TEST_F(SpillTest, OutOfMemoryWhenEverythingIsHeldSaysWhatIsHeld) {
  StartDaemon("8M");
  auto reader = Connect();
  std::vector<Blob> holds;
  for (int i = 0; i < 3; ++i)
    holds.push_back(*reader->GetBlob(Put(*client_, 2 << 20, i)));
  auto w = client_->CreateBlob(4 << 20);
  ASSERT_FALSE(w.ok());
  EXPECT_TRUE(w.status().IsOutOfMemory());
  const std::string& m = w.status().message();
  EXPECT_NE(m.find("cannot allocate 4194304 bytes"), std::string::npos) << m;
  EXPECT_NE(m.find("6291456 held by live readers"), std::string::npos) << m;
  EXPECT_NE(m.find("nothing more can be spilled"), std::string::npos) << m;
  // Releasing one makes room again.
  holds.pop_back();
  reader->Close();
  std::this_thread::sleep_for(100ms);
  EXPECT_TRUE(client_->CreateBlob(4 << 20).ok());
}

TEST_F(SpillTest, WithoutSpillDirOutOfMemoryIsImmediateAndExplained) {
  auto d = DaemonProcess::Start({"--size", "8M"});
  ASSERT_TRUE(d.ok());
  auto c = Client::Connect((*d)->socket());
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE((*c)->CreateBlob(6 << 20).ok() || true);
  auto keep = (*c)->CreateBlob(6 << 20);
  auto w = (*c)->CreateBlob(4 << 20);
  ASSERT_TRUE(w.status().IsOutOfMemory());
  EXPECT_NE(w.status().message().find("spilling is off (no --spill-dir)"),
            std::string::npos);
  EXPECT_TRUE((*c)->Evict({ObjectID(1)}).status().IsInvalid());
}

TEST_F(SpillTest, UnusableSpillDirIsReportedAndPutsFailCleanly) {
  auto d = DaemonProcess::Start(
      {"--size", "8M", "--spill-dir", "/proc/no-such-dir/spill"});
  ASSERT_TRUE(d.ok());
  auto c = Client::Connect((*d)->socket());
  ASSERT_TRUE(c.ok());
  auto status = (*c)->Status();
  EXPECT_FALSE(status->spill_enabled);
  EXPECT_NE(status->spill_error.find("/proc/no-such-dir"), std::string::npos);
  auto keep = (*c)->CreateBlob(6 << 20);
  auto w = (*c)->CreateBlob(4 << 20);
  ASSERT_TRUE(w.status().IsOutOfMemory());
  EXPECT_NE(w.status().message().find("cannot create spill directory"),
            std::string::npos)
      << w.status();
}

uint64_t RssOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  uint64_t kb = 0;
  while (in >> key) {
    if (key == "VmRSS:") {
      in >> kb;
      return kb * 1024;
    }
    std::string rest;
    std::getline(in, rest);
  }
  return 0;
}

TEST_F(SpillTest, MemoryTrimReturnsFreedPagesToTheOs) {
  auto d = DaemonProcess::Start({"--size", "256M", "--reserve"});
  ASSERT_TRUE(d.ok());
  auto c = Client::Connect((*d)->socket());
  ASSERT_TRUE(c.ok());
  uint64_t rss_before = RssOf((*d)->pid());
  EXPECT_GT(rss_before, 200u << 20);  // the reserved arena is resident
  ObjectID kept =
      *(*c)->PutBlob(std::vector<uint8_t>(1 << 20, 5).data(), 1 << 20);
  auto trimmed = (*c)->MemoryTrim();
  ASSERT_TRUE(trimmed.ok()) << trimmed.status();
  EXPECT_GT(*trimmed, 200u << 20);
  uint64_t rss_after = RssOf((*d)->pid());
  EXPECT_LT(rss_after + (200u << 20), rss_before)
      << "before " << rss_before << " after " << rss_after;
  // The live object is untouched and the arena still works.
  auto blob = (*c)->GetBlob(kept);
  ASSERT_TRUE(blob.ok());
  EXPECT_EQ(blob->data()[12345], 5);
  EXPECT_TRUE(
      (*c)->PutBlob(std::vector<uint8_t>(4 << 20, 1).data(), 4 << 20).ok());
}

TEST_F(SpillTest, StatusReportsMemoryAndSpillFigures) {
  StartDaemon("16M", {"--spill-high", "0.5", "--spill-low", "0.25"});
  for (int i = 0; i < 6; ++i) Put(*client_, 2 << 20, i);  // 12 MiB > 8 MiB
  StoreStatus s = Stats();
  EXPECT_TRUE(s.spill_enabled);
  EXPECT_EQ(s.spill_high, 0.5);
  // Above the high watermark, background spilling brings usage down.
  for (int i = 0; i < 100 && Stats().used > (8u << 20); ++i) {
    std::this_thread::sleep_for(10ms);
  }
  s = Stats();
  EXPECT_LE(s.used, 8u << 20);
  EXPECT_EQ(s.spilled_bytes + s.used, 12u << 20);
  EXPECT_EQ(s.spill_bytes_total, s.spilled_bytes);
  EXPECT_EQ(s.blobs, 6u);
}

TEST_F(SpillTest, ALargePutIntoAFragmentedArenaSpillsOnlyWhatItNeeds) {
  // Watermarks at 1.0: spills make room for the request and nothing more.
  StartDaemon("16M", {"--spill-high", "1.0", "--spill-low", "1.0"});
  constexpr size_t kMiB = 1 << 20;
  std::vector<ObjectID> ids;
  for (int i = 0; i < 16; ++i) ids.push_back(Put(*client_, kMiB, i));
  ASSERT_EQ(Stats().used, 16 * kMiB);
  // Reading the odd blobs leaves the even ones least recently used: by age
  // alone the daemon would spill 0, 2, 4, ... none of them adjacent, until
  // a 2 MiB range finally formed.
  for (int i = 1; i < 16; i += 2) ASSERT_TRUE(client_->GetBlob(ids[i]).ok());
  ObjectID big = Put(*client_, 2 * kMiB, 100);
  ASSERT_TRUE(big.valid());
  StoreStatus s = Stats();
  EXPECT_EQ(s.spill_bytes_total, 2 * kMiB) << "spilled " << s.spill_count;
  EXPECT_EQ(s.spill_count, 2u);
  // Nothing is lost: every blob reads back (spilled ones are reloaded).
  auto consumer = Connect();
  for (int i = 0; i < 16; ++i) {
    auto blob = consumer->GetBlob(ids[i]);
    ASSERT_TRUE(blob.ok()) << i << ": " << blob.status();
    ASSERT_TRUE(Matches(blob->data(), kMiB, i)) << "blob " << i;
  }
}

}  // namespace
}  // namespace trellis
