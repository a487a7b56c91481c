// End-to-end tests of libtrellis against a real trellisd, with real processes.
#include "trellis/client.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <set>
#include <thread>

#include "client/client_core.h"
#include "client/object_meta_internal.h"
#include "common/fd_passing.h"
#include "common/protocol.h"
#include "testing/daemon.h"
#include "trellis/tensor.h"

namespace trellis {
namespace {

using namespace std::chrono_literals;
using testing::DaemonProcess;
using testing::WaitChild;
using json = protocol::json;

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 31 + seed);
  return v;
}

// Runs `body` in a forked child; the child's exit code is body's return.
// Only async-signal-safe-ish work plus a fresh Client is done in the child.
template <typename F>
pid_t Fork(F body) {
  pid_t pid = fork();
  if (pid == 0) {
    int code = body();
    _exit(code);
  }
  return pid;
}

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = DaemonProcess::Start({"--size", "64M"});
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = std::move(*d);
    auto c = Client::Connect(daemon_->socket());
    ASSERT_TRUE(c.ok()) << c.status();
    client_ = std::move(*c);
  }

  std::unique_ptr<Client> NewClient() {
    auto c = Client::Connect(daemon_->socket());
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  uint64_t Used() { return client_->Status()->used; }

  // Polls until the daemon reports `used` bytes (disconnects are handled
  // asynchronously by the daemon).
  bool WaitForUsed(uint64_t used) {
    for (int i = 0; i < 500; ++i) {
      if (Used() == used) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<Client> client_;
};

// Without --etcd a daemon is a cluster of one: itself, named by its socket.
TEST_F(ClientTest, ClusterInfoOfALocalDaemonIsItself) {
  auto info = client_->ClusterInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->cluster, "");
  EXPECT_EQ(info->backend, "local");
  EXPECT_EQ(info->instance_id, client_->instance_id());
  ASSERT_EQ(info->members.size(), 1u);
  const ClusterMember& self = info->members[0];
  EXPECT_EQ(self.instance_id, client_->instance_id());
  EXPECT_EQ(self.ipc_socket, daemon_->socket());
  EXPECT_EQ(self.arena_size, client_->arena_size());
  EXPECT_EQ(self.rpc_endpoint, "");
  EXPECT_EQ(client_->Status()->cluster, "");
}

TEST_F(ClientTest, BlobPutInOneProcessIsReadInAnother) {
  auto data = Pattern(3 << 20, 7);
  auto id = client_->PutBlob(data.data(), data.size());
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_TRUE(client_->PutName(*id, "shared").ok());
  std::string socket = daemon_->socket();
  pid_t child = Fork([&] {
    auto c = Client::Connect(socket);
    if (!c.ok()) return 2;
    auto got = (*c)->GetName("shared");
    if (!got.ok()) return 3;
    auto blob = (*c)->GetBlob(*got);
    if (!blob.ok() || blob->size() != data.size()) return 4;
    if (!(*c)->InArena(blob->data())) return 5;
    return std::memcmp(blob->data(), data.data(), data.size()) == 0 ? 0 : 6;
  });
  EXPECT_EQ(WaitChild(child), 0);
}

TEST_F(ClientTest, SmallAndEmptyBlobsRoundTrip) {
  for (size_t n : {0, 1, 63, 64, 65, 4096, 65536, 65537}) {
    auto data = Pattern(n, static_cast<uint8_t>(n));
    auto id = client_->PutBlob(data.data(), n);
    ASSERT_TRUE(id.ok()) << n << ": " << id.status();
    auto blob = client_->GetBlob(*id);
    ASSERT_TRUE(blob.ok());
    ASSERT_EQ(blob->size(), n);
    if (n > 0) {
      EXPECT_EQ(std::memcmp(blob->data(), data.data(), n), 0) << n;
    }
  }
  std::vector<std::pair<const void*, uint64_t>> batch;
  auto small = Pattern(100, 1);
  for (int i = 0; i < 50; ++i) batch.emplace_back(small.data(), 100);
  auto ids = client_->PutBlobs(batch);
  ASSERT_TRUE(ids.ok());
  auto blobs = client_->GetBlobs(*ids);
  ASSERT_TRUE(blobs.ok());
  ASSERT_EQ(blobs->size(), 50u);
  for (const Blob& b : *blobs) {
    EXPECT_EQ(std::memcmp(b.data(), small.data(), 100), 0);
  }
}

// BlobWriter::Write takes three ways (pwrite through a bounce buffer of
// 256 KiB chunks, a memcpy into granules populated before, a populate and
// memcpy beyond 4 MiB): each must leave exactly the bytes a memcpy would.
TEST_F(ClientTest, BlobWriterWriteStoresTheBytesWhicheverWayItCopies) {
  for (size_t n :
       {size_t{1}, size_t{4096}, size_t{700} << 10, size_t{5} << 20}) {
    auto data = Pattern(n, static_cast<uint8_t>(n % 251));
    auto writer = client_->CreateBlob(n + 10);
    ASSERT_TRUE(writer.ok()) << writer.status();
    std::memset((*writer)->data(), 0xAB, n + 10);
    ASSERT_TRUE((*writer)->Write(3, data.data(), n).ok()) << n;
    // Out of range: refused, nothing written.
    Status over = (*writer)->Write(n + 5, data.data(), 6);
    EXPECT_TRUE(over.IsInvalid()) << over;
    EXPECT_NE(over.message().find("overruns"), std::string::npos) << over;
    auto id = (*writer)->Seal();
    ASSERT_TRUE(id.ok()) << id.status();
    auto blob = client_->GetBlob(*id);
    ASSERT_TRUE(blob.ok());
    const uint8_t* got = blob->data();
    EXPECT_EQ(got[0], 0xAB);
    EXPECT_EQ(got[2], 0xAB);
    EXPECT_EQ(std::memcmp(got + 3, data.data(), n), 0) << n;
    for (size_t i = n + 3; i < n + 10; ++i) EXPECT_EQ(got[i], 0xAB) << n;
  }
}

TEST_F(ClientTest, GetReturnsAPointerIntoTheSharedArenaNotACopy) {
  auto writer = client_->CreateBlob(1 << 20);
  ASSERT_TRUE(writer.ok());
  std::memset((*writer)->data(), 0xab, 1 << 20);
  uint8_t* written = (*writer)->data();
  auto id = (*writer)->Seal();
  ASSERT_TRUE(id.ok());
  auto blob = client_->GetBlob(*id);
  ASSERT_TRUE(blob.ok());
  EXPECT_EQ(blob->data(), written);  // the very bytes the writer wrote
  EXPECT_TRUE(client_->InArena(blob->data()));
  // A second client maps the same memfd: same offset from its arena base.
  auto other = NewClient();
  auto blob2 = other->GetBlob(*id);
  ASSERT_TRUE(blob2.ok());
  EXPECT_EQ(blob2->data() - other->arena_base(),
            blob->data() - client_->arena_base());
}

TEST_F(ClientTest, UnsealedBlobIsInvisibleAndAbortedOnWriterDestruction) {
  uint64_t base = Used();
  ObjectID id;
  {
    auto writer = client_->CreateBlob(4096);
    ASSERT_TRUE(writer.ok());
    id = (*writer)->id();
    auto other = NewClient();
    EXPECT_TRUE(other->GetBlob(id).status().IsNotSealed());
    EXPECT_GT(Used(), base);
  }
  EXPECT_EQ(Used(), base);
  EXPECT_TRUE(client_->GetBlob(id).status().IsObjectNotFound());
}

TEST_F(ClientTest, GetNameBlocksUntilAnotherProcessPutsIt) {
  std::string socket = daemon_->socket();
  pid_t child = Fork([&] {
    std::this_thread::sleep_for(300ms);
    auto c = Client::Connect(socket);
    if (!c.ok()) return 2;
    const char msg[] = "hello from the producer";
    auto id = (*c)->PutBlob(msg, sizeof(msg));
    if (!id.ok()) return 3;
    return (*c)->PutName(*id, "step1/output").ok() ? 0 : 4;
  });
  EXPECT_TRUE(client_->GetName("step1/output").status().IsObjectNotFound());
  auto id = client_->GetName("step1/output", /*wait=*/true, 20s);
  ASSERT_TRUE(id.ok()) << id.status();
  auto blob = client_->GetBlob(*id);
  ASSERT_TRUE(blob.ok());
  EXPECT_STREQ(reinterpret_cast<const char*>(blob->data()),
               "hello from the producer");
  EXPECT_EQ(WaitChild(child), 0);
}

TEST_F(ClientTest, GetNameTimesOutWithTheName) {
  auto r = client_->GetName("never", /*wait=*/true, 100ms);
  ASSERT_TRUE(r.status().IsTimeout()) << r.status();
  EXPECT_NE(r.status().message().find("'never'"), std::string::npos);
  // The connection is still usable afterwards.
  EXPECT_TRUE(client_->Status().ok());
}

TEST_F(ClientTest, NamesPutListDropAndVanishWithTheirObject) {
  uint8_t b = 1;
  ObjectID x = *client_->PutBlob(&b, 1);
  ObjectID y = *client_->PutBlob(&b, 1);
  ASSERT_TRUE(client_->PutName(x, "x_1").ok());
  ASSERT_TRUE(client_->PutName(y, "x_2").ok());
  ASSERT_TRUE(client_->PutName(y, "other").ok());
  EXPECT_TRUE(
      client_->PutName(x, "other", /*overwrite=*/false).IsObjectExists());
  EXPECT_TRUE(client_->PutName(ObjectID(42), "dangling").IsObjectNotFound());
  auto names = client_->ListNames("x_*");
  ASSERT_TRUE(names.ok());
  ASSERT_EQ(names->size(), 2u);
  EXPECT_EQ((*names)[0], std::make_pair(std::string("x_1"), x));
  ASSERT_TRUE(client_->DropName("x_1").ok());
  EXPECT_TRUE(client_->DropName("x_1").IsObjectNotFound());
  EXPECT_TRUE(client_->GetName("x_1").status().IsObjectNotFound());
  ASSERT_TRUE(client_->Delete({y}).ok());
  EXPECT_TRUE(client_->GetName("x_2").status().IsObjectNotFound());
  EXPECT_TRUE(client_->GetName("other").status().IsObjectNotFound());
}

TEST_F(ClientTest, GetMetaByNameIsTheNamedObjectsTree) {
  uint8_t bytes[3] = {7, 8, 9};
  ObjectID blob = *client_->PutBlob(bytes, sizeof(bytes));
  ObjectMeta meta("test::Holder");
  meta.AddMember("data", blob);
  ASSERT_TRUE(client_->CreateObject(meta, {.name = "holder"}).ok());
  auto by_name = client_->GetMetaByName("holder");
  ASSERT_TRUE(by_name.ok()) << by_name.status();
  auto by_id = client_->GetMeta(*client_->GetName("holder"));
  ASSERT_TRUE(by_id.ok());
  EXPECT_EQ(by_name->id(), by_id->id());
  EXPECT_EQ(ObjectMetaAccess::TreeOf(*by_name),
            ObjectMetaAccess::TreeOf(*by_id));
  auto data = by_name->GetBlobMember("data");
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->data()[2], 9);
  auto missing = client_->GetMetaByName("no such name");
  EXPECT_TRUE(missing.status().IsObjectNotFound());
  EXPECT_NE(missing.status().message().find("'no such name'"),
            std::string::npos)
      << missing.status();
}

TEST_F(ClientTest, AGlobalObjectListsItsMembersAndWhereTheyLive) {
  uint8_t bytes[3] = {1, 2, 3};
  ObjectMeta chunk("test::Chunk");
  chunk.SetField("rows", 3);
  chunk.AddMember("data", *client_->PutBlob(bytes, sizeof(bytes)));
  ObjectID chunk_id = *client_->CreateObject(chunk);
  ObjectMeta global("test::GlobalThing");
  global.SetGlobal();
  global.SetField("partitions", 1);
  global.AddMember("chunk_0", chunk_id);
  auto id = client_->CreateObject(global, {.name = "everything"});
  ASSERT_TRUE(id.ok()) << id.status();

  auto got = client_->GetMetaByName("everything");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(got->is_global());
  EXPECT_EQ(got->id(), *id);
  EXPECT_EQ(got->nbytes(), 3u);
  EXPECT_EQ(*got->GetIntField("partitions"), 1);
  auto member = got->GetMember("chunk_0");
  ASSERT_TRUE(member.ok()) << member.status();
  EXPECT_FALSE(member->is_global());
  EXPECT_EQ(member->id(), chunk_id);
  EXPECT_EQ(member->instance_id(), client_->instance_id());
  EXPECT_EQ(*member->GetIntField("rows"), 3);
  EXPECT_TRUE(member->MemberNames().empty());  // no blobs: read it by id
  EXPECT_TRUE(client_->GetMeta(chunk_id)->GetBlobMember("data").ok());

  // A member must be an existing object.
  ObjectMeta bad("test::GlobalThing");
  bad.SetGlobal();
  bad.AddMember("chunk_0", ObjectID::Make(client_->instance_id(), 1 << 30));
  auto refused = client_->CreateObject(bad);
  EXPECT_TRUE(refused.status().IsObjectNotFound()) << refused.status();
  EXPECT_NE(refused.status().message().find("member 'chunk_0'"),
            std::string::npos);

  ASSERT_TRUE(client_->Delete({*id}).ok());
  EXPECT_TRUE(client_->GetMeta(*id).status().IsObjectNotFound());
  EXPECT_TRUE(client_->GetMeta(chunk_id).ok());  // its chunk stays
}

TEST_F(ClientTest, TreesDeeperThanTheWireAllowsAreRefusedBeforeSending) {
  uint8_t byte = 1;
  ObjectID blob = *client_->PutBlob(&byte, 1);
  auto nested = [&](int levels) {
    ObjectMeta node("test::Leaf");
    node.AddMember("data", blob);
    for (int i = 0; i < levels; ++i) {
      ObjectMeta parent("test::Level");
      parent.AddMember("child", node);
      node = parent;
    }
    return node;
  };
  // 29 levels: 1 (body) + 2 per node + the leaf's reference is 62 levels.
  EXPECT_TRUE(client_->CreateObject(nested(29)).ok());
  // 30 levels fill the body's 64, but the GetMeta reply would nest 65: the
  // daemon refuses it (an ordinary error; the connection stays usable).
  EXPECT_TRUE(client_->CreateObject(nested(30)).status().IsInvalid());
  auto deep = client_->CreateObject(nested(40));
  EXPECT_TRUE(deep.status().IsInvalid()) << deep.status();
  EXPECT_NE(deep.status().message().find("nests deeper"), std::string::npos);
  // Refused here, not by the daemon: the connection is still usable.
  EXPECT_TRUE(client_->PutBlob(&byte, 1).ok());
}

TEST_F(ClientTest, DeleteWhileAnotherProcessHoldsKeepsItsBytesIntact) {
  uint64_t base = Used();
  auto data = Pattern(1 << 20, 3);
  ObjectID id = *client_->PutBlob(data.data(), data.size());
  ASSERT_TRUE(client_->PutName(id, "held").ok());
  int to_child[2], to_parent[2];
  ASSERT_EQ(pipe(to_child), 0);
  ASSERT_EQ(pipe(to_parent), 0);
  std::string socket = daemon_->socket();
  pid_t child = Fork([&] {
    auto c = Client::Connect(socket);
    if (!c.ok()) return 2;
    auto blob = (*c)->GetBlob(*(*c)->GetName("held"));
    if (!blob.ok()) return 3;
    char go = 1;
    if (write(to_parent[1], &go, 1) != 1) return 4;
    if (read(to_child[0], &go, 1) != 1) return 5;  // parent deleted it
    // Meanwhile the parent has tried to reuse the memory with new objects.
    return std::memcmp(blob->data(), data.data(), data.size()) == 0 ? 0 : 6;
  });
  char sync;
  ASSERT_EQ(read(to_parent[0], &sync, 1), 1);
  auto deleted = client_->Delete({id});
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_TRUE(client_->GetBlob(id).status().IsObjectNotFound());
  // Fill the arena: none of it may land on the held bytes.
  std::vector<std::unique_ptr<BlobWriter>> fillers;
  while (true) {
    auto w = client_->CreateBlob(256 << 10);
    if (!w.ok()) break;
    std::memset((*w)->data(), 0xee, (*w)->size());
    fillers.push_back(std::move(*w));
  }
  ASSERT_EQ(write(to_child[1], &sync, 1), 1);
  EXPECT_EQ(WaitChild(child), 0);
  fillers.clear();
  EXPECT_TRUE(WaitForUsed(base));  // the child's exit released the hold
}

TEST_F(ClientTest, ADroppedHoldGoesWithTheNextRequestOrSoonAfterIfIdle) {
  auto data = Pattern(8192, 5);
  ObjectID id = *client_->PutBlob(data.data(), data.size());
  auto reader = Client::Connect(daemon_->socket());
  ASSERT_TRUE(reader.ok()) << reader.status();
  uint64_t held = 0;
  {
    auto blob = (*reader)->GetBlob(id);
    ASSERT_TRUE(blob.ok()) << blob.status();
    held = client_->Status()->held_bytes;
    EXPECT_GE(held, data.size());
  }
  // The reader's next request carries the release ahead of itself.
  ASSERT_TRUE((*reader)->Status().ok());
  EXPECT_EQ(client_->Status()->held_bytes, 0u);
  // A reader that goes idle after dropping a blob still lets go: its
  // flusher sends the release (within kIdlePeriod).
  { ASSERT_TRUE((*reader)->GetBlob(id).ok()); }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  uint64_t now_held = held;
  while (now_held != 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    now_held = client_->Status()->held_bytes;
  }
  EXPECT_EQ(now_held, 0u) << "the idle reader's hold was never released";
  // And a delete of it frees its bytes at once.
  ASSERT_TRUE(client_->Delete({id}).ok());
  EXPECT_TRUE(client_->GetBlob(id).status().IsObjectNotFound());
}

// The parent's release flusher (a thread) does not exist in a forked
// child; the child releases through its own, and destroying a client it
// inherited returns (it hung once: the parent's flusher had been waiting on
// the condition variable the child destroyed).
TEST_F(ClientTest, AForkedChildReleasesAndDropsInheritedClients) {
  auto data = Pattern(8192, 7);
  ObjectID id = *client_->PutBlob(data.data(), data.size());
  { ASSERT_TRUE(client_->GetBlob(id).ok()); }  // starts the flusher
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // it idles
  std::string socket = daemon_->socket();
  pid_t child = Fork([&] {
    { auto blob = client_->GetBlob(id); }  // the inherited client, dropped
    auto c = Client::Connect(socket);
    if (!c.ok()) return 2;
    for (int i = 0; i < 3; ++i) {
      if (!(*c)->GetBlob(id).ok()) return 3;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // flushed
    }
    if ((*c)->Status()->held_bytes != 0) return 4;
    c->reset();
    client_.reset();
    return 0;
  });
  int code = -1;
  for (int i = 0; i < 2000 && code == -1; ++i) {  // up to 20 s
    int status = 0;
    if (waitpid(child, &status, WNOHANG) == child) {
      code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  if (code == -1) {
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
  }
  EXPECT_EQ(code, 0) << "-1: the child hung";
  EXPECT_TRUE(client_->Status().ok());
}

TEST_F(ClientTest, ClientKilledMidCreateLeavesNoUsedBytes) {
  uint64_t base = Used();
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  std::string socket = daemon_->socket();
  pid_t child = Fork([&] {
    auto c = Client::Connect(socket);
    if (!c.ok()) return 2;
    auto w = (*c)->CreateBlob(10 << 20);
    if (!w.ok()) return 3;
    std::memset((*w)->data(), 1, 5 << 20);  // half written
    // Also hold a sealed object, which must be released too.
    uint8_t b = 0;
    auto sealed = (*c)->PutBlob(&b, 1);
    auto held = (*c)->GetBlob(*sealed);
    char go = 1;
    if (write(ready[1], &go, 1) != 1) return 4;
    pause();
    return 0;
  });
  char sync;
  ASSERT_EQ(read(ready[0], &sync, 1), 1);
  EXPECT_GE(Used(), base + (10 << 20));
  kill(child, SIGKILL);
  EXPECT_EQ(WaitChild(child), 128 + SIGKILL);
  EXPECT_TRUE(WaitForUsed(base + 64));  // only the sealed 1-byte blob remains
  auto status = client_->Status();
  EXPECT_EQ(status->unsealed_blobs, 0u);
  EXPECT_EQ(status->clients, 1u);
}

TEST_F(ClientTest, MixedRandomSizesFillNinetyFivePercentOfTheArena) {
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<int> exponent(6, 20);  // 64 B .. 1 MiB
  std::vector<ObjectID> ids;
  Status last;
  while (true) {
    uint64_t size = (1ull << exponent(rng)) + rng() % 1000;
    auto w = client_->CreateBlob(size);
    if (!w.ok()) {
      last = w.status();
      break;
    }
    ids.push_back(*(*w)->Seal());
  }
  EXPECT_TRUE(last.IsOutOfMemory()) << last;
  EXPECT_NE(last.message().find("cannot allocate"), std::string::npos) << last;
  EXPECT_NE(last.message().find("held by live readers"), std::string::npos);
  auto status = client_->Status();
  EXPECT_GE(static_cast<double>(status->used) / status->arena_size, 0.95);
  ASSERT_TRUE(client_->Delete(ids).ok());
  EXPECT_EQ(Used(), 0u);
}

TEST_F(ClientTest, ThirtyTwoConcurrentClientsMixedWorkload) {
  uint64_t base = Used();
  std::atomic<int> errors{0};
  std::atomic<long> operations{0};
  std::vector<std::thread> threads;
  auto deadline = std::chrono::steady_clock::now() + 3s;
  for (int t = 0; t < 32; ++t) {
    threads.emplace_back([&, t] {
      auto c = Client::Connect(daemon_->socket());
      if (!c.ok()) {
        errors++;
        return;
      }
      std::mt19937 rng(t);
      std::vector<ObjectID> mine;
      // A few seconds, and at least 50 operations per client however slow
      // the machine (no assertion depends on speed).
      for (int done = 0;
           done < 50 || std::chrono::steady_clock::now() < deadline; ++done) {
        size_t n = 1 + rng() % (64 << 10);
        auto data = Pattern(n, static_cast<uint8_t>(t));
        auto id = (*c)->PutBlob(data.data(), n);
        if (!id.ok()) {
          errors++;
          continue;
        }
        mine.push_back(*id);
        auto blob = (*c)->GetBlob(mine[rng() % mine.size()]);
        if (!blob.ok() || blob->data()[0] != static_cast<uint8_t>(t)) errors++;
        if (mine.size() > 8) {
          size_t victim = rng() % mine.size();
          if (!(*c)->Delete({mine[victim]}).ok()) errors++;
          mine.erase(mine.begin() + victim);
        }
        operations++;
      }
      if (!(*c)->Delete(mine).ok()) errors++;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_GE(operations.load(), 32 * 50);
  EXPECT_TRUE(WaitForUsed(base));
  auto status = client_->Status();
  EXPECT_EQ(status->blobs, 0u);
  EXPECT_EQ(status->deleted_pending, 0u);
}

TEST_F(ClientTest, ObjectTreesTensorsAndDataFrames) {
  std::vector<int64_t> a = {1, 2, 3, 4, 5, 6};
  std::vector<double> b = {0.5, 1.5, 2.5};
  auto tid = Tensor::Put(*client_, "<i8", {2, 3}, a.data());
  ASSERT_TRUE(tid.ok()) << tid.status();
  auto tensor = Tensor::Get(*client_, *tid);
  ASSERT_TRUE(tensor.ok()) << tensor.status();
  EXPECT_EQ(tensor->shape(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(tensor->strides(), (std::vector<int64_t>{24, 8}));
  EXPECT_EQ(tensor->data_as<int64_t>()[5], 6);

  std::vector<int64_t> ints = {10, 20, 30};
  PutOptions options;
  options.name = "frame";
  options.persist = true;
  auto fid = DataFrame::Put(
      *client_, {{"ints", "<i8", ints.data()}, {"floats", "<f8", b.data()}}, 3,
      options);
  ASSERT_TRUE(fid.ok()) << fid.status();
  EXPECT_EQ(*client_->GetName("frame"), *fid);
  auto df = DataFrame::Get(*client_, *fid);
  ASSERT_TRUE(df.ok()) << df.status();
  EXPECT_EQ(df->num_rows(), 3);
  EXPECT_EQ(df->column_names(), (std::vector<std::string>{"ints", "floats"}));
  EXPECT_EQ(df->column("floats")->data_as<double>()[2], 2.5);
  EXPECT_EQ(df->column(0)->data_as<int64_t>()[1], 20);
  EXPECT_TRUE(df->column("nope").status().IsObjectNotFound());
  EXPECT_EQ(df->meta().nbytes(), 64u + 24u);  // one shared blob, 64-aligned
  auto listed = client_->ListObjects("trellis::DataFrame");
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].id(), *fid);
  EXPECT_TRUE(ObjectMetaAccess::TreeOf((*listed)[0]).value("persisted", false));
  EXPECT_TRUE(client_->Persist(*tid).ok());
  EXPECT_TRUE(client_->Persist(ObjectID(77)).IsObjectNotFound());
  // Reading a tensor of a blob is a type error, not a crash.
  auto wrong = Tensor::Get(*client_, *fid);
  EXPECT_TRUE(wrong.status().IsInvalid());
}

// A DataFrame as Python writes one: columns 0 and 2 as rows 1 and 0 of a
// 2-d block, column 1 a node of its own. `block_columns` is the field.
Result<ObjectID> PutBlockFrame(Client& client, const json& block_columns) {
  std::vector<int64_t> block = {7, 8, 9, 1, 2, 3};  // rows: column 2, column 0
  std::vector<double> own = {0.5, 1.5, 2.5};
  TRELLIS_ASSIGN_OR_RAISE(ObjectID block_id,
                          Tensor::Put(client, "<i8", {2, 3}, block.data()));
  TRELLIS_ASSIGN_OR_RAISE(ObjectID own_id,
                          Tensor::Put(client, "<f8", {3}, own.data()));
  ObjectMeta meta(kDataFrameTypeName);
  ObjectMetaAccess::SetField(&meta, "columns", json::array({"a", "b", "c"}));
  ObjectMetaAccess::SetField(&meta, "block_columns", block_columns);
  meta.SetField("num_rows", 3);
  meta.AddMember("block_0", block_id);
  meta.AddMember("column_1", own_id);
  ObjectMeta index(kRangeIndexTypeName);
  index.SetField("start", 0);
  index.SetField("stop", 3);
  index.SetField("step", 1);
  meta.AddMember("index", index);
  return client.CreateObject(meta);
}

TEST_F(ClientTest, DataFrameColumnsInABlockAreRowsOfIt) {
  auto id = PutBlockFrame(*client_, json::array({json::array({2, 0})}));
  ASSERT_TRUE(id.ok()) << id.status();
  auto df = DataFrame::Get(*client_, *id);
  ASSERT_TRUE(df.ok()) << df.status();
  EXPECT_EQ(df->block_row(0), 1);
  EXPECT_EQ(df->block_row(1), -1);
  EXPECT_EQ(df->block_row(2), 0);
  auto a = df->column("a");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->shape(), (std::vector<int64_t>{3}));
  EXPECT_EQ(a->strides(), (std::vector<int64_t>{8}));
  EXPECT_EQ(a->data_as<int64_t>()[0], 1);
  EXPECT_EQ(a->data_as<int64_t>()[2], 3);
  EXPECT_EQ(df->column(2)->data_as<int64_t>()[1], 8);
  EXPECT_EQ(df->column(1)->data_as<double>()[2], 2.5);
  EXPECT_EQ(df->column_meta(0)->type_name(), kTensorTypeName);  // the block
  EXPECT_EQ(*a->Row(2)->data_as<int64_t>(), 3);                 // a 0-d tensor
  EXPECT_TRUE(a->Row(3).status().IsInvalid());
  EXPECT_TRUE(df->column(2)->Row(0)->Row(0).status().IsInvalid());  // 0-d
}

TEST_F(ClientTest, DataFrameBlocksThatDoNotPlaceEachColumnOnceAreInvalid) {
  std::vector<std::pair<json, std::string>> cases = {
      {json::array({json::array({2, 2})}), "placed once"},
      {json::array({json::array({0, 1})}), "column_1 too"},
      {json::array({json::array({0, 3})}), "placed once"},
      {json::array({json::array({0, -1})}), "placed once"},
      {json::array({json::array({0, "2"})}), "placed once"},
      {json::array({json::array({2, 0}), json::array({})}), "block_1"},
      {json::array({7}), "block_columns[0]"},
      {json::object(), "'block_columns' must be a list"},
      {json::array({json::array({2})}), "column_0"},  // column 0 nowhere
  };
  for (const auto& [blocks, says] : cases) {
    auto id = PutBlockFrame(*client_, blocks);
    ASSERT_TRUE(id.ok()) << id.status();
    auto df = DataFrame::Get(*client_, *id);
    EXPECT_TRUE(df.status().IsInvalid()) << blocks;
    EXPECT_NE(df.status().message().find(says), std::string::npos)
        << blocks << ": " << df.status();
  }
}

TEST_F(ClientTest, GottenObjectsOutliveTheirClient) {
  auto data = Pattern(4096, 9);
  ObjectID id = *client_->PutBlob(data.data(), data.size());
  Blob blob;
  {
    auto other = NewClient();
    blob = *other->GetBlob(id);
    other->Close();
    EXPECT_TRUE(other->Status().status().IsDisconnected());
  }
  EXPECT_EQ(std::memcmp(blob.data(), data.data(), data.size()), 0);
}

TEST_F(ClientTest, ConnectToNothingIsDisconnected) {
  auto c = Client::Connect(daemon_->dir() + "/nothing.sock");
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(c.status().IsDisconnected());
  EXPECT_NE(c.status().message().find("nothing.sock"), std::string::npos);
}

TEST_F(ClientTest, DaemonDeathIsDisconnectedNotACrash) {
  uint8_t b = 1;
  ObjectID id = *client_->PutBlob(&b, 1);
  auto blob = client_->GetBlob(id);
  daemon_->Stop();
  EXPECT_TRUE(client_->Status().status().IsDisconnected());
  EXPECT_EQ(blob->data()[0], 1);  // our mapping is still valid
}

// A put into a spare blob may skip waiting for its reply (SendDeferred),
// with the id the spare reserved: another connection naming that id right
// after sees the object, whichever socket the daemon reads first.
TEST_F(ClientTest, APutThatDoesNotWaitIsSeenByAnotherConnectionAtOnce) {
  using protocol::json;
  using protocol::MessageType;
  const auto& core = ClientInternals::core(*client_);
  auto other = NewClient();
  ASSERT_TRUE(other);
  const auto& other_core = ClientInternals::core(*other);
  auto tree = [](uint64_t blob, int k) {
    return json{{"typename", "test::T"},
                {"fields", {{"k", k}}},
                {"members", {{"b", {{"id", blob}}}}}};
  };
  auto first = core->Call(MessageType::kCreateObject,
                          {{"tree", tree(0, 0)},
                           {"data", json::binary(std::vector<uint8_t>(64, 1))},
                           {"spare", 4096}});
  ASSERT_TRUE(first.ok()) << first.status();
  json spare = (*first)["spare"];
  for (int i = 1; i <= 200; ++i) {
    ASSERT_TRUE(spare.contains("object")) << spare;
    auto blob = spare["id"].get<uint64_t>();
    auto object = spare["object"].get<uint64_t>();
    std::memset(core->base() + spare["offset"].get<uint64_t>(), i & 0xff, 100);
    ASSERT_TRUE(core->SendDeferred(MessageType::kCreateObject,
                                   {{"tree", tree(blob, i)},
                                    {"id", object},
                                    {"trim", {{"id", blob}, {"size", 100}}},
                                    {"spare", 4096}},
                                   object)
                    .ok());
    auto got = other_core->Call(MessageType::kGetMeta, {{"ids", {object}}});
    ASSERT_TRUE(got.ok()) << "put " << i << ": " << got.status();
    EXPECT_EQ((*got)["trees"][0]["fields"]["k"], i);
    other_core->Release({ObjectID(blob)});
    auto replies = core->TakeDeferred();
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(replies[0].tag, object);
    ASSERT_TRUE(replies[0].reply.ok()) << replies[0].reply.status();
    EXPECT_EQ((*replies[0].reply)["id"], object);
    spare = (*replies[0].reply)["spare"];
  }
  // One that fails: its error comes back with its tag, and the connection
  // serves on; the next request reads the reply on its way to its own.
  ASSERT_TRUE(core->SendDeferred(
                      MessageType::kCreateObject,
                      {{"tree", tree(spare["id"], 0)}, {"id", uint64_t{12345}}},
                      7)
                  .ok());
  EXPECT_TRUE(core->HasDeferred());
  EXPECT_TRUE(client_->Status().ok());
  auto replies = core->TakeDeferred();
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].tag, 7u);
  EXPECT_TRUE(replies[0].reply.status().IsInvalid())
      << replies[0].reply.status();
  EXPECT_FALSE(core->HasDeferred());
}

TEST_F(ClientTest, StatusHasEveryFieldTheDaemonSendsAndNoOther) {
  // A daemon that spills, so its string fields are not empty.
  auto spilling = DaemonProcess::Start(
      {"--size", "64M", "--spill-dir", daemon_->dir() + "/spill"});
  ASSERT_TRUE(spilling.ok()) << spilling.status();
  auto client = Client::Connect((*spilling)->socket());
  ASSERT_TRUE(client.ok()) << client.status();
  auto sent = ClientInternals::core(**client)->Call(
      protocol::MessageType::kStatus, protocol::json::object());
  ASSERT_TRUE(sent.ok()) << sent.status();
  auto status = (*client)->Status();
  ASSERT_TRUE(status.ok()) << status.status();

  std::set<std::string> sent_keys, fields;
  for (const auto& [key, value] : sent->items()) sent_keys.insert(key);
  status->ForEachField([&](const char* name, const char*, const auto& value) {
    fields.insert(name);
    auto it = sent->find(name);
    if (it == sent->end()) return;
    EXPECT_EQ(protocol::json(value), *it) << name << " decoded differently";
  });
  EXPECT_EQ(fields, sent_keys);
  EXPECT_GE(fields.size(), 29u);  // the daemon's reply had 29 in issue 13
  EXPECT_TRUE(status->spill_enabled);
  EXPECT_EQ(status->spill_dir, daemon_->dir() + "/spill");
  EXPECT_EQ(status->arena_size, 64u << 20);
  EXPECT_EQ(status->clients, 1u);
}

// ------------------------------------------- Hello against a fake daemon

// How many of this process's descriptors are open, and how many of them
// are the memfd called `name`.
struct OpenFds {
  int total = 0;
  int named = 0;
};
OpenFds CountOpenFds(const std::string& name) {
  OpenFds count;
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return count;
  while (struct dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    ++count.total;
    std::string path = std::string("/proc/self/fd/") + entry->d_name;
    char link[256];
    ssize_t n = readlink(path.c_str(), link, sizeof(link) - 1);
    if (n > 0 &&
        std::string(link, static_cast<size_t>(n)).rfind("/memfd:" + name, 0) ==
            0) {
      ++count.named;
    }
  }
  closedir(dir);
  return count;
}

protocol::json HelloBody(uint64_t arena_size) {
  return {{"version", protocol::kProtocolVersion},
          {"client_id", 1},
          {"instance_id", 3},
          {"arena_size", arena_size},
          {"max_inline_blob", 1024}};
}

// A socketpair whose one end plays a daemon that has already sent its Hello
// reply `reply`, with a memfd arena called "fake-arena" attached if
// `with_fd`; the other end is the client's transport.
struct FakeDaemon {
  UniqueFd end;
  std::unique_ptr<Transport> transport;
};
FakeDaemon QueueHello(const std::vector<uint8_t>& reply, bool with_fd) {
  int fds[2];
  EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  FakeDaemon fake{UniqueFd(fds[0]),
                  MakeUnixTransport(UniqueFd(fds[1]), "fake daemon")};
  UniqueFd arena(memfd_create("fake-arena", MFD_CLOEXEC));
  EXPECT_EQ(ftruncate(arena.get(), 1 << 20), 0);
  auto sent = SendWithFd(fake.end.get(), reply.data(), reply.size(),
                         with_fd ? arena.get() : -1);
  EXPECT_TRUE(sent.ok()) << sent.status();
  return fake;  // the arena is in flight only: our copy closes here
}

TEST(ClientHelloTest, AGoodHelloMapsTheArenaAndKeepsOneDescriptor) {
  FakeDaemon fake = QueueHello(
      protocol::EncodeFrame(protocol::MessageType::kReply, HelloBody(1 << 20)),
      /*with_fd=*/true);
  auto core = ClientCore::Start(std::move(fake.transport));
  ASSERT_TRUE(core.ok()) << core.status();
  EXPECT_EQ((*core)->size(), 1u << 20);
  EXPECT_EQ((*core)->instance_id(), 3);
  EXPECT_EQ((*core)->max_inline_blob(), 1024u);
  EXPECT_EQ((*core)->path(), "fake daemon");
  // Mapped; the received descriptor closed, the arena's own duplicate
  // kept (SharedArena::Write writes through it).
  EXPECT_EQ(CountOpenFds("fake-arena").named, 1);
  (*core)->base()[(1 << 20) - 1] = 1;  // and the mapping works
  core->reset();
  EXPECT_EQ(CountOpenFds("fake-arena").named, 0);  // gone with the core
}

TEST(ClientHelloTest, ABadHelloReplyLeavesNoDescriptorBehind) {
  using protocol::EncodeFrame;
  using protocol::MessageType;
  protocol::json no_size = HelloBody(1 << 20);
  no_size.erase("arena_size");
  protocol::json no_instance = HelloBody(1 << 20);
  no_instance.erase("instance_id");
  std::vector<uint8_t> bad_flags = EncodeFrame(MessageType::kReply, {});
  bad_flags[6] = 1;  // frame flags must be 0
  std::vector<uint8_t> cut = EncodeFrame(MessageType::kReply, HelloBody(64));
  cut.resize(cut.size() - 1);
  struct Case {
    const char* what;
    std::vector<uint8_t> reply;
    bool with_fd;
    bool hang_up;  // the daemon closes its end after sending
    StatusCode code;
  };
  std::vector<Case> cases = {
      {"no arena_size", EncodeFrame(MessageType::kReply, no_size), true, false,
       StatusCode::kInvalid},
      {"no instance_id", EncodeFrame(MessageType::kReply, no_instance), true,
       false, StatusCode::kInvalid},
      {"error reply",
       EncodeFrame(MessageType::kError,
                   protocol::ErrorBody(Status::Invalid("version 9?"))),
       true, false, StatusCode::kInvalid},
      {"undecodable frame", bad_flags, true, false, StatusCode::kInvalid},
      {"not a reply", EncodeFrame(MessageType::kGetMeta, {}), true, false,
       StatusCode::kInvalid},
      {"no descriptor", EncodeFrame(MessageType::kReply, HelloBody(1 << 20)),
       false, false, StatusCode::kInvalid},
      {"unmappable arena size",
       EncodeFrame(MessageType::kReply, HelloBody(uint64_t{1} << 62)), true,
       false, StatusCode::kIOError},
      {"hang-up mid-reply", cut, true, true, StatusCode::kDisconnected},
  };
  for (Case& c : cases) {
    FakeDaemon fake = QueueHello(c.reply, c.with_fd);
    if (c.hang_up) fake.end.Reset();
    OpenFds before = CountOpenFds("fake-arena");
    ASSERT_EQ(before.named, 0) << c.what;  // the arena is only in flight
    auto core = ClientCore::Start(std::move(fake.transport));
    ASSERT_FALSE(core.ok()) << c.what;
    EXPECT_EQ(core.status().code(), c.code) << c.what << ": " << core.status();
    OpenFds after = CountOpenFds("fake-arena");
    EXPECT_EQ(after.named, 0) << c.what << ": the arena fd leaked";
    EXPECT_EQ(after.total, before.total - 1) << c.what;  // the client's end
  }
}

// A transport with no shared arena, as a remote daemon's will be: replies
// come from a queue, requests are recorded.
class ArenalessTransport final : public Transport {
 public:
  explicit ArenalessTransport(std::vector<uint8_t> replies)
      : replies_(std::move(replies)) {}
  Status Send(const uint8_t* data, size_t size) override {
    sent_->insert(sent_->end(), data, data + size);
    return Status::OK();
  }
  Result<size_t> Receive(uint8_t* buffer, size_t capacity) override {
    if (replies_.empty()) return Status::Disconnected("no more replies");
    size_t n = std::min(capacity, replies_.size());
    std::memcpy(buffer, replies_.data(), n);
    replies_.erase(replies_.begin(), replies_.begin() + n);
    return n;
  }
  Status Attach(const protocol::json&) override { return Status::OK(); }
  SharedArena* arena() override { return nullptr; }
  void Close() override {}
  const std::string& peer() const override { return peer_; }
  std::shared_ptr<std::vector<uint8_t>> sent_ =
      std::make_shared<std::vector<uint8_t>>();

 private:
  std::vector<uint8_t> replies_;
  std::string peer_ = "remote:7000";
};

TEST(ClientHelloTest, ATransportWithoutASharedArenaMakesARemoteCore) {
  auto transport = std::make_unique<ArenalessTransport>(
      protocol::EncodeFrame(protocol::MessageType::kReply, HelloBody(1 << 20)));
  auto sent = transport->sent_;
  auto core = ClientCore::Start(std::move(transport), "tok");
  ASSERT_TRUE(core.ok()) << core.status();
  EXPECT_TRUE((*core)->remote());
  EXPECT_EQ((*core)->base(), nullptr);
  EXPECT_EQ((*core)->size(), 0u);
  EXPECT_EQ((*core)->path(), "remote:7000");
  // The Hello, with the token, went through the transport.
  protocol::FrameDecoder decoder;
  decoder.Feed(sent->data(), sent->size());
  auto hello = decoder.Next();
  ASSERT_TRUE(hello.ok() && hello->has_value());
  EXPECT_EQ((*hello)->type,
            static_cast<uint16_t>(protocol::MessageType::kHello));
  EXPECT_EQ((*hello)->body["token"], "tok");
  // Its GetMeta bodies ask for relocated trees.
  EXPECT_EQ((*core)->GetMetaBody({ObjectID(5)})["relocate"], true);
}

TEST(ClientHelloTest, ConnectToAFakeDaemonThatSendsABadHelloLeaksNothing) {
  // Through the public entry point: a listening socket whose one client
  // gets a Hello reply without arena_size, with an arena fd attached.
  char dir[] = "/tmp/trellis-hello.XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string path = std::string(dir) + "/fake.sock";
  UniqueFd listener(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(bind(listener.get(), reinterpret_cast<struct sockaddr*>(&addr),
                 sizeof(addr)),
            0);
  ASSERT_EQ(listen(listener.get(), 1), 0);
  protocol::json body = HelloBody(1 << 20);
  body.erase("arena_size");
  std::vector<uint8_t> reply =
      protocol::EncodeFrame(protocol::MessageType::kReply, body);
  UniqueFd arena(memfd_create("fake-arena", MFD_CLOEXEC));
  OpenFds before = CountOpenFds("fake-arena");
  std::thread daemon([&] {
    UniqueFd conn(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(conn.valid());
    ASSERT_TRUE(
        SendWithFd(conn.get(), reply.data(), reply.size(), arena.get()).ok());
    char buffer[256];  // until the client hangs up
    while (read(conn.get(), buffer, sizeof(buffer)) > 0) {
    }
  });
  auto client = Client::Connect(path);
  daemon.join();
  EXPECT_TRUE(client.status().IsInvalid()) << client.status();
  OpenFds after = CountOpenFds("fake-arena");
  EXPECT_EQ(after.named, before.named);  // our own copy only
  EXPECT_EQ(after.total, before.total);
  unlink(path.c_str());
  rmdir(dir);
}

}  // namespace
}  // namespace trellis
