// The remote client (Client::ConnectRpc, the TCP transport) against a real
// trellisd serving --rpc on loopback: bytes put remotely read back the same
// over IPC and the reverse, typed objects through relocated GetMeta trees,
// the same errors as IPC, the token handshake, and a daemon that dies in the
// middle of a get.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "testing/daemon.h"
#include "testing/pattern.h"
#include "trellis/client.h"
#include "trellis/tensor.h"

namespace trellis {
namespace {

using testing::DaemonOptions;
using testing::DaemonProcess;

constexpr uint64_t kMiB = 1u << 20;

using trellis::testing::Pattern;

class RemoteClientTest : public ::testing::Test {
 protected:
  void StartDaemon(std::vector<std::string> extra = {}) {
    DaemonOptions options;
    options.args = {"--size", "512M"};
    options.args.insert(options.args.end(), extra.begin(), extra.end());
    options.rpc = "127.0.0.1:0";
    auto daemon = DaemonProcess::Start(options);
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = std::move(*daemon);
    endpoint_ = "127.0.0.1:" + std::to_string(daemon_->rpc_port());
    auto ipc = Client::Connect(daemon_->socket());
    ASSERT_TRUE(ipc.ok()) << ipc.status();
    ipc_ = std::move(*ipc);
  }
  std::unique_ptr<Client> Remote(const std::string& token = "") {
    auto c = Client::ConnectRpc(endpoint_, token);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }

  std::unique_ptr<DaemonProcess> daemon_;
  std::string endpoint_;
  std::unique_ptr<Client> ipc_;
};

const std::vector<uint64_t> kSizes = {0, 1, kMiB, 8 * kMiB + 1, 64 * kMiB};

TEST_F(RemoteClientTest, RemotePutsReadTheSameOverIpcAndBack) {
  StartDaemon();
  auto remote = Remote();
  ASSERT_TRUE(remote);
  EXPECT_TRUE(remote->is_remote());
  EXPECT_FALSE(ipc_->is_remote());
  EXPECT_EQ(remote->arena_base(), nullptr);
  EXPECT_EQ(remote->arena_size(), 0u);
  EXPECT_EQ(remote->socket_path(), endpoint_);
  EXPECT_EQ(remote->instance_id(), ipc_->instance_id());
  for (uint64_t size : kSizes) {
    SCOPED_TRACE(size);
    std::vector<uint8_t> data = Pattern(size, size + 1);
    // Remote put (PutBlob: inline or uploaded) -> IPC get.
    auto id = remote->PutBlob(data.data(), size);
    ASSERT_TRUE(id.ok()) << id.status();
    auto local = ipc_->GetBlob(*id);
    ASSERT_TRUE(local.ok()) << local.status();
    ASSERT_EQ(local->size(), size);
    EXPECT_EQ(std::memcmp(local->data(), data.data(), size), 0);
    // Remote writer -> IPC get.
    auto writer = remote->CreateBlob(size);
    ASSERT_TRUE(writer.ok()) << writer.status();
    EXPECT_FALSE(remote->InArena((*writer)->data()));
    if (size) std::memcpy((*writer)->data(), data.data(), size);
    auto written = (*writer)->Seal();
    ASSERT_TRUE(written.ok()) << written.status();
    auto local2 = ipc_->GetBlob(*written);
    ASSERT_TRUE(local2.ok());
    EXPECT_EQ(std::memcmp(local2->data(), data.data(), size), 0);
    // IPC put -> remote get.
    std::vector<uint8_t> other = Pattern(size, size + 99);
    auto ipc_id = ipc_->PutBlob(other.data(), size);
    ASSERT_TRUE(ipc_id.ok());
    auto got = remote->GetBlob(*ipc_id);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->size(), size);
    ASSERT_NE(got->data(), nullptr);
    EXPECT_FALSE(remote->InArena(got->data()));
    EXPECT_EQ(std::memcmp(got->data(), other.data(), size), 0);
    ASSERT_TRUE(ipc_->Delete({*id, *written, *ipc_id}).ok());
  }
  // Several blobs in one get; nothing stays held for the remote client.
  std::vector<uint8_t> a = Pattern(1000, 1), b = Pattern(3 * kMiB + 7, 2);
  ObjectID ia = *ipc_->PutBlob(a.data(), a.size());
  ObjectID ib = *ipc_->PutBlob(b.data(), b.size());
  auto both = remote->GetBlobs({ib, ia, ib});
  ASSERT_TRUE(both.ok()) << both.status();
  EXPECT_EQ(std::memcmp((*both)[0].data(), b.data(), b.size()), 0);
  EXPECT_EQ(std::memcmp((*both)[1].data(), a.data(), a.size()), 0);
  EXPECT_EQ(std::memcmp((*both)[2].data(), b.data(), b.size()), 0);
  EXPECT_EQ(ipc_->Status()->held_bytes, 0u);
  // Gotten bytes outlive the client.
  remote.reset();
  EXPECT_EQ(std::memcmp((*both)[1].data(), a.data(), a.size()), 0);
}

TEST_F(RemoteClientTest, TypedObjectsThroughRelocatedTrees) {
  StartDaemon();
  auto remote = Remote();
  ASSERT_TRUE(remote);
  std::vector<int64_t> ints = {10, 20, 30};
  std::vector<double> floats = {0.5, 1.5, 2.5};
  PutOptions named;
  named.name = "frame";
  // Put remotely: the column blob is uploaded before the CreateObject that
  // seals it.
  auto fid = DataFrame::Put(
      *remote, {{"ints", "<i8", ints.data()}, {"floats", "<f8", floats.data()}},
      3, named);
  ASSERT_TRUE(fid.ok()) << fid.status();
  for (Client* c : {remote.get(), ipc_.get()}) {
    auto df = DataFrame::Get(*c, *fid);
    ASSERT_TRUE(df.ok()) << df.status();
    EXPECT_EQ(df->num_rows(), 3);
    EXPECT_EQ(df->column("floats")->data_as<double>()[2], 2.5);
    EXPECT_EQ(df->column(0)->data_as<int64_t>()[1], 20);
  }
  // A tensor put over IPC, read remotely by id and the frame by name.
  std::vector<int64_t> a = {1, 2, 3, 4, 5, 6};
  auto tid = Tensor::Put(*ipc_, "<i8", {2, 3}, a.data());
  ASSERT_TRUE(tid.ok());
  auto tensor = Tensor::Get(*remote, *tid);
  ASSERT_TRUE(tensor.ok()) << tensor.status();
  EXPECT_EQ(tensor->shape(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(tensor->data_as<int64_t>()[5], 6);
  EXPECT_FALSE(remote->InArena(tensor->data()));
  auto by_name = remote->GetMetaByName("frame");
  ASSERT_TRUE(by_name.ok()) << by_name.status();
  auto df = DataFrame::FromMeta(*by_name);
  ASSERT_TRUE(df.ok()) << df.status();
  EXPECT_EQ(df->column("ints")->data_as<int64_t>()[2], 30);
  // Two trees in one GetMetas share one buffer.
  auto metas = remote->GetMetas({*tid, *fid});
  ASSERT_TRUE(metas.ok()) << metas.status();
  EXPECT_EQ(Tensor::FromMeta((*metas)[0])->data_as<int64_t>()[0], 1);
  EXPECT_EQ(DataFrame::FromMeta((*metas)[1])->column(1)->data_as<double>()[0],
            0.5);
  EXPECT_EQ(ipc_->Status()->held_bytes, 0u);  // holds dropped after the copy
  // Names, lists and deletes are the ordinary requests.
  EXPECT_EQ(*remote->GetName("frame"), *fid);
  ASSERT_TRUE(remote->PutName(*tid, "tensor").ok());
  EXPECT_EQ(*ipc_->GetName("tensor"), *tid);
  EXPECT_EQ(remote->ListNames()->size(), 2u);
  EXPECT_EQ(remote->ListObjects("trellis::DataFrame")->size(), 1u);
  ASSERT_TRUE(remote->Delete({*tid}).ok());
  EXPECT_TRUE(ipc_->GetMeta(*tid).status().IsObjectNotFound());
}

TEST_F(RemoteClientTest, ErrorsAreTheIpcOnes) {
  StartDaemon();
  auto remote = Remote();
  ASSERT_TRUE(remote);
  for (Client* c : {remote.get(), ipc_.get()}) {
    EXPECT_TRUE(c->GetBlob(ObjectID(12345)).status().IsObjectNotFound());
    EXPECT_TRUE(c->GetMeta(ObjectID(12345)).status().IsObjectNotFound());
    EXPECT_TRUE(c->GetMetaByName("nope").status().IsObjectNotFound());
    EXPECT_TRUE(c->CreateBlob(1ull << 40).status().IsOutOfMemory());
  }
  // The connection is still fine after those.
  std::vector<uint8_t> d = Pattern(100, 3);
  EXPECT_TRUE(remote->PutBlob(d.data(), d.size()).ok());
  // A dropped remote writer aborts its blob: nothing is left behind.
  uint64_t used = ipc_->Status()->used;
  {
    auto w = remote->CreateBlob(kMiB);
    ASSERT_TRUE(w.ok());
    EXPECT_GT(ipc_->Status()->used, used);
  }
  EXPECT_EQ(ipc_->Status()->used, used);
  // Bad endpoints.
  EXPECT_TRUE(Client::ConnectRpc("no-port").status().IsInvalid());
  EXPECT_TRUE(Client::ConnectRpc("127.0.0.1:99999").status().IsInvalid());
  auto refused = Client::ConnectRpc("127.0.0.1:1");
  EXPECT_TRUE(refused.status().IsDisconnected()) << refused.status();
  EXPECT_NE(refused.status().message().find("127.0.0.1:1"), std::string::npos);
}

TEST_F(RemoteClientTest, TokenIsRequiredAndChecked) {
  char tmpl[] = "/tmp/trellis-remote-test.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl, token_file = dir + "/token";
  std::ofstream(token_file) << "s3cret\n";
  chmod(token_file.c_str(), 0600);
  StartDaemon({"--rpc-token", token_file});
  auto none = Client::ConnectRpc(endpoint_);
  EXPECT_TRUE(none.status().IsInvalid()) << none.status();
  EXPECT_NE(none.status().message().find("token"), std::string::npos);
  auto wrong = Client::ConnectRpc(endpoint_, "guess");
  EXPECT_TRUE(wrong.status().IsInvalid()) << wrong.status();
  EXPECT_NE(wrong.status().message().find("invalid RPC token"),
            std::string::npos);
  auto right = Client::ConnectRpc(endpoint_, "s3cret");
  ASSERT_TRUE(right.ok()) << right.status();
  EXPECT_TRUE((*right)->Status().ok());
  // From $TRELLIS_RPC_TOKEN_FILE when none is given.
  setenv("TRELLIS_RPC_TOKEN_FILE", token_file.c_str(), 1);
  auto from_env = Client::ConnectRpc(endpoint_);
  setenv("TRELLIS_RPC_TOKEN_FILE", (dir + "/missing").c_str(), 1);
  auto missing = Client::ConnectRpc(endpoint_);
  unsetenv("TRELLIS_RPC_TOKEN_FILE");
  EXPECT_TRUE(from_env.ok()) << from_env.status();
  EXPECT_TRUE(missing.status().IsIOError()) << missing.status();
  std::filesystem::remove_all(dir);
}

TEST_F(RemoteClientTest, DaemonKilledMidGetIsDisconnected) {
  StartDaemon();
  constexpr uint64_t kSize = 256 * kMiB;
  auto writer = ipc_->CreateBlob(kSize);
  ASSERT_TRUE(writer.ok());
  std::memset((*writer)->data(), 0x5a, kSize);
  ObjectID id = *(*writer)->Seal();
  auto remote = Remote();
  ASSERT_TRUE(remote);
  Result<Blob> got = Status::Invalid("not run");
  std::atomic<bool> done{false};
  std::thread reader([&] {
    got = remote->GetBlob(id);
    done = true;
  });
  // The daemon holds the blob for the remote reader while it streams it;
  // once the IPC client sees the hold, the stream is under way. Stopping
  // the daemon there leaves it unfinished (it is far larger than the
  // socket buffers), and then it is killed.
  while (ipc_->Status()->held_bytes < kSize && !done) std::this_thread::yield();
  ASSERT_FALSE(done) << "the get finished before the daemon was stopped";
  kill(daemon_->pid(), SIGSTOP);
  kill(daemon_->pid(), SIGKILL);
  reader.join();
  ASSERT_FALSE(got.ok());
  EXPECT_TRUE(got.status().IsDisconnected()) << got.status();
  EXPECT_NE(got.status().message().find(endpoint_), std::string::npos)
      << got.status();
  // Later calls fail the same way; nothing crashes.
  EXPECT_TRUE(remote->Status().status().IsDisconnected());
  std::vector<uint8_t> d(10);
  EXPECT_TRUE(remote->PutBlob(d.data(), d.size()).status().IsDisconnected());
  daemon_->Stop();
}

}  // namespace
}  // namespace trellis
