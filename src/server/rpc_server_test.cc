// trellisd's RPC (TCP) server against a real daemon: the flags and bind
// rules, the token handshake, puts and gets with bulk frames (WriteBlob,
// ReadBlobs, GetMeta {relocate}) checked byte for byte against the IPC
// side, protocol violations and disconnects in the middle of a transfer,
// and the fuzzer's corpus sent over TCP.
#include "server/rpc_server.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "common/protocol.h"
#include "testing/daemon.h"
#include "testing/pattern.h"
#include "testing/rpc_client.h"
#include "trellis/client.h"

namespace trellis {
namespace {

using protocol::IdsToJson;
using protocol::json;
using protocol::MessageType;
using testing::DaemonOptions;
using testing::DaemonProcess;
using testing::RpcTestClient;
using testing::RunDaemonToExit;

constexpr uint64_t kMiB = 1u << 20;
const char kToken[] = "s3cret-token";

using trellis::testing::Pattern;

// A private dir for token files, removed at the end.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/trellis-rpc-test.XXXXXX";
    path_ = mkdtemp(tmpl) ? tmpl : "";
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  // Writes `content` to `name` with `mode`; returns the path.
  std::string Write(const std::string& name, const std::string& content,
                    mode_t mode = 0600) {
    std::string path = path_ + "/" + name;
    std::ofstream(path) << content;
    chmod(path.c_str(), mode);
    return path;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// ------------------------------------------------------------ flag parsing

TEST(RpcEndpointTest, ParsesPortHostPortAndBracketedV6) {
  auto port = server::ParseRpcEndpoint("7000");
  ASSERT_TRUE(port.ok()) << port.status();
  EXPECT_EQ(port->first, "127.0.0.1");
  EXPECT_EQ(port->second, 7000);
  auto host = server::ParseRpcEndpoint("0.0.0.0:0");
  ASSERT_TRUE(host.ok());
  EXPECT_EQ(host->first, "0.0.0.0");
  EXPECT_EQ(host->second, 0);
  auto v6 = server::ParseRpcEndpoint("[::1]:65535");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->first, "::1");
  EXPECT_EQ(v6->second, 65535);
  for (const char* bad : {"", "x", "1:2:3", "host:", ":80", "host:65536",
                          "host:-1", "host:80x", "[]:80"}) {
    auto r = server::ParseRpcEndpoint(bad);
    EXPECT_TRUE(r.status().IsInvalid()) << bad;
  }
}

TEST(RpcTokenTest, ComparesWholeTokens) {
  EXPECT_TRUE(server::TokensEqual("abc", "abc"));
  EXPECT_FALSE(server::TokensEqual("abd", "abc"));
  EXPECT_FALSE(server::TokensEqual("ab", "abc"));
  EXPECT_FALSE(server::TokensEqual("abcd", "abc"));
  EXPECT_FALSE(server::TokensEqual("", "abc"));
}

TEST(RpcTokenTest, ReadsTheFileLessOneNewlineAndRefusesPublicOrEmptyFiles) {
  TempDir dir;
  auto token = server::ReadRpcToken(dir.Write("t", "tok en\n\n"));
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, "tok en\n");
  EXPECT_EQ(*server::ReadRpcToken(dir.Write("crlf", "tok\r\n")), "tok");
  auto shared = server::ReadRpcToken(dir.Write("public", "tok", 0644));
  EXPECT_TRUE(shared.status().IsInvalid());
  EXPECT_NE(shared.status().message().find("chmod 600"), std::string::npos);
  EXPECT_TRUE(server::ReadRpcToken(dir.Write("group", "tok", 0640)).ok());
  EXPECT_TRUE(
      server::ReadRpcToken(dir.Write("empty", "\n")).status().IsInvalid());
  EXPECT_TRUE(server::ReadRpcToken(dir.path() + "/none").status().IsIOError());
}

// ------------------------------------------------------------------ the CLI

TEST(RpcCliTest, ANonLoopbackHostWithoutATokenFailsAtStartUp) {
  auto r = RunDaemonToExit({"--socket", "/tmp/trellis-never.sock", "--size",
                            "16M", "--rpc", "0.0.0.0:0"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.stderr_text.find("not a loopback address"), std::string::npos)
      << r.stderr_text;
  EXPECT_NE(r.stderr_text.find("--rpc-token FILE"), std::string::npos);
}

TEST(RpcCliTest, RefusesBadEndpointsPublicTokensAndATokenWithoutRpc) {
  TempDir dir;
  std::string open_token = dir.Write("token", kToken, 0644);
  struct Case {
    std::vector<std::string> args;
    std::string says;
  } cases[] = {
      {{"--rpc", "localhost:http"}, "is not PORT, HOST:PORT"},
      {{"--rpc", "0.0.0.0:0", "--rpc-token", open_token}, "chmod 600"},
      {{"--rpc", "0", "--rpc-token", dir.path() + "/none"}, "cannot read"},
      {{"--rpc-token", open_token}, "--rpc-token requires --rpc"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"--socket", "/tmp/trellis-never.sock",
                                     "--size", "16M"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    auto r = RunDaemonToExit(args);
    EXPECT_NE(r.exit_code, 0) << c.says;
    EXPECT_NE(r.stderr_text.find(c.says), std::string::npos) << r.stderr_text;
  }
}

TEST(RpcCliTest, APortInUseFailsAtStartUp) {
  DaemonOptions options;
  options.rpc = "127.0.0.1:0";
  auto first = DaemonProcess::Start(options);
  ASSERT_TRUE(first.ok()) << first.status();
  auto r = RunDaemonToExit(
      {"--socket", "/tmp/trellis-never.sock", "--size", "16M", "--rpc",
       "127.0.0.1:" + std::to_string((*first)->rpc_port())});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.stderr_text.find("cannot listen"), std::string::npos)
      << r.stderr_text;
}

// ------------------------------------------------------- against a daemon

class RpcTest : public ::testing::Test {
 protected:
  // Starts trellisd serving RPC on loopback; with a token if `token`.
  void StartDaemon(bool token = false, std::string rpc = "127.0.0.1:0",
                   std::vector<std::string> args = {"--size", "256M"}) {
    DaemonOptions options;
    options.rpc = std::move(rpc);
    options.capture_stderr = true;
    options.args = std::move(args);
    if (token) {
      options.args.push_back("--rpc-token");
      options.args.push_back(dir_.Write("token", std::string(kToken) + "\n"));
      token_ = kToken;
    }
    auto d = DaemonProcess::Start(options);
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = std::move(*d);
    observer_ = Tcp();
    ASSERT_TRUE(observer_);
  }

  // A TCP client, after a Hello with the daemon's token (none if `hello` is
  // false). Null (and a test failure) if that fails.
  std::unique_ptr<RpcTestClient> Tcp(bool hello = true) {
    auto c = RpcTestClient::Connect("127.0.0.1", daemon_->rpc_port());
    EXPECT_TRUE(c.ok()) << c.status();
    if (!c.ok()) return nullptr;
    if (hello) {
      auto reply = (*c)->Hello(token_);
      EXPECT_TRUE(reply.ok()) << reply.status();
      if (!reply.ok()) return nullptr;
    }
    return std::move(*c);
  }

  // Puts `data` as one blob through a UNIX-socket client (ipc_, connected on
  // first use) and returns its id; a test failure and ObjectID() if that
  // fails.
  ObjectID PutOverIpc(const std::vector<uint8_t>& data) {
    if (!ipc_) {
      auto connected = Client::Connect(daemon_->socket());
      EXPECT_TRUE(connected.ok()) << connected.status();
      if (!connected.ok()) return ObjectID();
      ipc_ = std::move(*connected);
    }
    auto id = ipc_->PutBlob(data.data(), data.size());
    EXPECT_TRUE(id.ok()) << id.status();
    return id.ok() ? *id : ObjectID();
  }

  json StatusNow() {
    auto st = observer_->Call(MessageType::kStatus, json::object());
    EXPECT_TRUE(st.ok()) << st.status();
    return st.ok() ? *st : json::object();
  }

  // Polls Status until `done` holds (the daemon notices a closed connection
  // on its own time); fails the test after 10 s.
  void WaitFor(const std::function<bool(const json&)>& done,
               const std::string& what) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    json st;
    while (std::chrono::steady_clock::now() < deadline) {
      st = StatusNow();
      if (done(st)) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ADD_FAILURE() << "timed out waiting for " << what << "; status " << st;
  }
  void WaitForClients(uint64_t n) {
    WaitFor([n](const json& st) { return st["clients"] == n; },
            std::to_string(n) + " clients");
  }

  // The daemon still serves: the observer, a new TCP client, a new IPC one.
  void ExpectServing() {
    EXPECT_FALSE(StatusNow().empty());
    auto tcp = Tcp();
    ASSERT_TRUE(tcp);
    EXPECT_TRUE(tcp->Call(MessageType::kStatus, json::object()).ok());
    auto ipc = Client::Connect(daemon_->socket());
    ASSERT_TRUE(ipc.ok()) << ipc.status();
    EXPECT_TRUE((*ipc)->Status().ok());
  }

  // Blobs created over TCP: their ids.
  std::vector<ObjectID> CreateBlobs(RpcTestClient* c,
                                    const std::vector<uint64_t>& sizes) {
    auto r = c->Call(MessageType::kCreateBlobs, {{"sizes", sizes}});
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return {};
    return *protocol::GetIds(*r, "ids");
  }

  TempDir dir_;
  std::unique_ptr<DaemonProcess> daemon_;
  std::optional<std::string> token_;
  std::unique_ptr<RpcTestClient> observer_;
  std::unique_ptr<Client> ipc_;
};

// -------------------------------------------------------------- handshake

TEST_F(RpcTest, HelloOverTcpRepliesWithTheTransportAndNoFd) {
  StartDaemon();
  auto c = RpcTestClient::Connect("127.0.0.1", daemon_->rpc_port());
  ASSERT_TRUE(c.ok());
  auto reply = (*c)->Hello();  // no token needed on an open loopback port
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ((*reply)["transport"], "tcp");
  EXPECT_EQ((*reply)["version"], protocol::kProtocolVersion);
  EXPECT_GT((*reply)["client_id"].get<uint64_t>(), 0u);
  EXPECT_EQ((*reply)["arena_size"], 256 * kMiB);
  auto st = (*c)->Call(MessageType::kStatus, json::object());
  ASSERT_TRUE(st.ok());
  EXPECT_EQ((*st)["clients"], 2);  // the observer and this one
}

TEST_F(RpcTest, TheRightTokenIsAccepted) {
  StartDaemon(/*token=*/true);
  auto c = Tcp();  // with kToken; the file has it with a newline
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->Call(MessageType::kStatus, json::object()).ok());
}

TEST_F(RpcTest, AWrongOrMissingTokenIsRefusedLoggedAndHarmsNoOne) {
  StartDaemon(/*token=*/true);
  const std::optional<std::string> bad[] = {
      std::nullopt, std::string("wrong"), std::string("s3cret"),
      std::string(kToken) + "x", std::string(kToken) + "\n"};
  for (const auto& token : bad) {
    auto c = RpcTestClient::Connect("127.0.0.1", daemon_->rpc_port());
    ASSERT_TRUE(c.ok());
    auto reply = (*c)->Hello(token);
    EXPECT_TRUE(reply.status().IsInvalid()) << reply.status();
    EXPECT_NE(reply.status().message().find("RPC token rejected"),
              std::string::npos)
        << reply.status();
    EXPECT_TRUE((*c)->ExpectClosed().ok());
  }
  // A token of the wrong type counts as none.
  auto c = RpcTestClient::Connect("127.0.0.1", daemon_->rpc_port());
  ASSERT_TRUE(c.ok());
  auto reply =
      (*c)->Call(MessageType::kHello,
                 {{"version", protocol::kProtocolVersion}, {"token", 7}});
  EXPECT_NE(reply.status().message().find("carries no token"),
            std::string::npos);
  // Refusals are logged with the peer's address.
  std::string log = daemon_->Log();
  EXPECT_NE(log.find("RPC token rejected: invalid RPC token"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("RPC token rejected: the Hello carries no token"),
            std::string::npos);
  EXPECT_NE(log.find("from 127.0.0.1:"), std::string::npos);
  EXPECT_EQ(log.find(kToken), std::string::npos) << "the log shows the secret";
  WaitForClients(1);
  ExpectServing();
}

TEST_F(RpcTest, ANonLoopbackAddressServesWithAToken) {
  StartDaemon(/*token=*/true, "0.0.0.0:0");
  auto c = Tcp();
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->Call(MessageType::kStatus, json::object()).ok());
  auto anonymous = RpcTestClient::Connect("127.0.0.1", daemon_->rpc_port());
  ASSERT_TRUE(anonymous.ok());
  EXPECT_TRUE((*anonymous)->Hello().status().IsInvalid());
}

// ------------------------------------------------------------- transfers

const std::vector<uint64_t> kSizes = {0, 1, 8 * kMiB - 1, 8 * kMiB + 1,
                                      64 * kMiB};

TEST_F(RpcTest, PutOverTcpGetOverIpcIsByteIdentical) {
  StartDaemon();
  auto tcp = Tcp();
  ASSERT_TRUE(tcp);
  std::vector<ObjectID> ids = CreateBlobs(tcp.get(), kSizes);
  ASSERT_EQ(ids.size(), kSizes.size());
  std::vector<std::vector<uint8_t>> data;
  for (size_t i = 0; i < kSizes.size(); ++i) {
    data.push_back(Pattern(kSizes[i], i + 1));
    // The largest in odd-sized chunks, the others in the largest allowed.
    uint64_t chunk = i == 4 ? 3 * kMiB + 5 : protocol::kMaxBulkChunk;
    ASSERT_TRUE(tcp->WriteBlob(ids[i], data[i].data(), kSizes[i], chunk).ok());
  }
  // WriteBlob has no reply: Seal's reply comes after every chunk landed.
  ASSERT_TRUE(tcp->Call(MessageType::kSeal, {{"ids", IdsToJson(ids)}}).ok());
  json members = json::object();
  for (size_t i = 0; i < ids.size(); ++i) {
    members["b" + std::to_string(i)] = {{"id", ids[i].value()}};
  }
  json tree = {{"typename", "test::Bundle"},
               {"fields", json::object()},
               {"members", members}};
  ASSERT_TRUE(tcp->Call(MessageType::kCreateObject,
                        {{"tree", tree}, {"name", "bundle"}})
                  .ok());

  auto ipc = Client::Connect(daemon_->socket());
  ASSERT_TRUE(ipc.ok());
  auto meta = (*ipc)->GetMetaByName("bundle");
  ASSERT_TRUE(meta.ok()) << meta.status();
  for (size_t i = 0; i < kSizes.size(); ++i) {
    auto blob = meta->GetBlobMember("b" + std::to_string(i));
    ASSERT_TRUE(blob.ok()) << blob.status();
    ASSERT_EQ(blob->size(), kSizes[i]);
    EXPECT_EQ(std::memcmp(blob->data(), data[i].data(), kSizes[i]), 0) << i;
  }
}

TEST_F(RpcTest, PutOverIpcGetMetaRelocatedAndReadBlobsOverTcpIsByteIdentical) {
  StartDaemon();
  auto ipc = Client::Connect(daemon_->socket());
  ASSERT_TRUE(ipc.ok());
  std::vector<std::vector<uint8_t>> data;
  ObjectMeta bundle("test::Bundle");
  std::vector<ObjectID> ids;
  for (size_t i = 0; i < kSizes.size(); ++i) {
    data.push_back(Pattern(kSizes[i], 100 + i));
    auto writer = (*ipc)->CreateBlob(kSizes[i]);
    ASSERT_TRUE(writer.ok());
    if (kSizes[i] > 0) {
      std::memcpy((*writer)->data(), data[i].data(), kSizes[i]);
    }
    auto id = (*writer)->Seal();
    ASSERT_TRUE(id.ok());
    ids.push_back(*id);
    bundle.AddMember("b" + std::to_string(i), *id);
  }
  auto root = (*ipc)->CreateObject(bundle, PutOptions{});
  ASSERT_TRUE(root.ok()) << root.status();

  auto tcp = Tcp();
  ASSERT_TRUE(tcp);
  // Two trees: the bundle and, again, its 1-byte blob on its own.
  auto got =
      tcp->Call(MessageType::kGetMeta,
                {{"ids", {root->value(), ids[1].value()}}, {"relocate", true}});
  ASSERT_TRUE(got.ok()) << got.status();
  std::vector<ObjectID> held = *protocol::GetIds(*got, "held");
  ASSERT_EQ(held.size(), kSizes.size() + 1);
  std::vector<uint64_t> sizes;
  auto bytes = tcp->ReadBlobs(held, &sizes);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  const json& trees = (*got)["trees"];
  for (size_t i = 0; i < kSizes.size(); ++i) {
    const json& node = trees[0]["members"]["b" + std::to_string(i)];
    ASSERT_EQ(node["id"], ids[i].value());
    uint64_t offset = node["offset"];
    ASSERT_EQ(offset % protocol::kBlobAlignment, 0u);
    ASSERT_LE(offset + kSizes[i], bytes->size());
    EXPECT_EQ(std::memcmp(bytes->data() + offset, data[i].data(), kSizes[i]), 0)
        << i;
  }
  uint64_t lone = trees[1]["offset"];  // the second copy, after the bundle's
  EXPECT_EQ(lone, protocol::ConcatenatedPositions(sizes, nullptr).back());
  EXPECT_EQ((*bytes)[lone], data[1][0]);
  // ReadBlobs released its own holds; GetMeta's are the client's to release.
  uint64_t total = 0;
  for (uint64_t s : kSizes) total += s;
  EXPECT_EQ(StatusNow()["held_bytes"], total);
  ASSERT_TRUE(
      tcp->Send(MessageType::kRelease, {{"ids", IdsToJson(held)}}).ok());
  // Its own Status comes after its Release (one connection, in order).
  auto after = tcp->Call(MessageType::kStatus, json::object());
  ASSERT_TRUE(after.ok());
  EXPECT_EQ((*after)["held_bytes"], 0);

  // Without relocate, offsets are the arena's (the IPC meaning).
  auto plain = tcp->Call(MessageType::kGetMeta, {{"ids", {ids[4].value()}}});
  ASSERT_TRUE(plain.ok());
  auto arena_blob = (*ipc)->GetBlob(ids[4]);
  ASSERT_TRUE(arena_blob.ok());
  EXPECT_EQ((*plain)["trees"][0]["offset"],
            static_cast<uint64_t>(arena_blob->data() - (*ipc)->arena_base()));
}

TEST_F(RpcTest, ReadBlobsErrorsAreOrdinaryRepliesAndIpcIsServedTheSame) {
  StartDaemon();
  std::vector<uint8_t> data = Pattern(12345, 7);
  ObjectID id = PutOverIpc(data);
  ASSERT_TRUE(id.valid());
  ObjectMeta composite("test::One");
  composite.AddMember("b", id);
  auto object = ipc_->CreateObject(composite, PutOptions{});
  ASSERT_TRUE(object.ok());
  auto tcp = Tcp();
  ASSERT_TRUE(tcp);
  EXPECT_TRUE(
      tcp->StartReadBlobs({ObjectID(12345)}).status().IsObjectNotFound());
  EXPECT_TRUE(tcp->StartReadBlobs({*object}).status().IsInvalid());
  // The connection goes on, and an empty ReadBlobs is just a reply.
  auto none = tcp->StartReadBlobs({});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  std::vector<uint64_t> sizes;
  auto twice = tcp->ReadBlobs({id, id}, &sizes);
  ASSERT_TRUE(twice.ok()) << twice.status();
  EXPECT_EQ(sizes, (std::vector<uint64_t>{12345, 12345}));
  EXPECT_EQ(std::memcmp(twice->data(), data.data(), data.size()), 0);
  EXPECT_EQ(std::memcmp(twice->data() + 12352, data.data(), data.size()), 0);

  // Over the UNIX socket, ReadBlobs works the same way.
  auto unix_client = RpcTestClient::ConnectUnix(daemon_->socket());
  ASSERT_TRUE(unix_client.ok());
  auto hello = (*unix_client)->Hello();
  ASSERT_TRUE(hello.ok());
  EXPECT_FALSE(hello->contains("transport"));
  auto local = (*unix_client)->ReadBlobs({id}, &sizes);
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_EQ(std::memcmp(local->data(), data.data(), data.size()), 0);
  // A ReadBlobs releases its holds before the connection's next request.
  ASSERT_TRUE((*unix_client)->Call(MessageType::kStatus, json::object()).ok());
  auto after = tcp->Call(MessageType::kStatus, json::object());
  ASSERT_TRUE(after.ok());
  EXPECT_EQ((*after)["held_bytes"], 0);
}

TEST_F(RpcTest, PipelinedReadBlobsAreAnsweredInOrder) {
  StartDaemon();
  std::vector<uint8_t> data = Pattern(100, 5);
  ObjectID id = PutOverIpc(data);
  ASSERT_TRUE(id.valid());
  auto tcp = Tcp();
  ASSERT_TRUE(tcp);
  // Many requests in one write: each is answered, bytes and all, before the
  // next one runs (and the daemon does not recurse once per request).
  constexpr int kRequests = 20000;
  std::vector<uint8_t> burst;
  for (int i = 0; i < kRequests; ++i) {
    protocol::AppendFrame(
        MessageType::kReadBlobs,
        {{"ids", i % 2 ? json::array({id.value()}) : json::array()}}, &burst);
  }
  ASSERT_TRUE(tcp->SendRaw(burst.data(), burst.size()).ok());
  std::vector<uint8_t> got(128);
  for (int i = 0; i < kRequests; ++i) {
    auto reply = tcp->ReadFrame();
    ASSERT_TRUE(reply.ok()) << i << ": " << reply.status();
    ASSERT_EQ(reply->type, static_cast<uint16_t>(MessageType::kReply)) << i;
    if (i % 2 == 0) continue;
    ASSERT_EQ(reply->body["sizes"], json::array({100})) << i;
    ASSERT_TRUE(tcp->ReceiveBlobs({id}, {100}, got.data()).ok()) << i;
    ASSERT_EQ(std::memcmp(got.data(), data.data(), 100), 0) << i;
  }
  auto st = tcp->Call(MessageType::kStatus, json::object());
  ASSERT_TRUE(st.ok());
  EXPECT_EQ((*st)["held_bytes"], 0);
}

// ------------------------------------------------ WriteBlob rule breaking

TEST_F(RpcTest, WriteBlobOutsideTheClientsUnsealedBlobsIsAnErrorAndACLose) {
  StartDaemon();
  auto owner = Tcp();
  ASSERT_TRUE(owner);
  ObjectID foreign = CreateBlobs(owner.get(), {100})[0];
  std::vector<uint8_t> bytes = Pattern(100, 1);

  struct Case {
    std::string name;
    std::function<ObjectID(RpcTestClient*)> target;  // makes the victim blob
    uint64_t offset, size;
    std::string says;
  } cases[] = {
      {"foreign", [&](RpcTestClient*) { return foreign; }, 0, 10,
       "being written by another client"},
      {"sealed",
       [&](RpcTestClient* c) {
         ObjectID id = CreateBlobs(c, {100})[0];
         EXPECT_TRUE(c->Call(MessageType::kSeal, {{"ids", {id.value()}}}).ok());
         return id;
       },
       0, 10, "is sealed"},
      {"past the end",
       [&](RpcTestClient* c) { return CreateBlobs(c, {100})[0]; }, 90, 20,
       "outside blob"},
      {"offset past the end",
       [&](RpcTestClient* c) { return CreateBlobs(c, {100})[0]; },
       uint64_t{1} << 63, 1, "outside blob"},
      {"unknown", [&](RpcTestClient*) { return ObjectID(987654321); }, 0, 1,
       "not found"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto victim = Tcp();
    ASSERT_TRUE(victim);
    CreateBlobs(victim.get(), {1000});  // unsealed: aborted with the close
    ObjectID target = c.target(victim.get());
    ASSERT_TRUE(
        victim->WriteBlobChunk(target, c.offset, bytes.data(), c.size).ok());
    auto error = victim->ReadFrame();
    ASSERT_TRUE(error.ok()) << error.status();
    ASSERT_EQ(error->type, static_cast<uint16_t>(MessageType::kError));
    Status st = protocol::StatusFromErrorBody(error->body);
    EXPECT_NE(st.message().find("WriteBlob: "), std::string::npos) << st;
    EXPECT_NE(st.message().find(c.says), std::string::npos) << st;
    EXPECT_TRUE(victim->ExpectClosed().ok());
    victim.reset();
    WaitForClients(2);  // the observer and the owner
    // Only the owner's blob is still being written.
    EXPECT_EQ(StatusNow()["unsealed_blobs"], 1);
  }
  // The owner was not disturbed: it writes and seals its blob.
  ASSERT_TRUE(owner->WriteBlob(foreign, bytes.data(), 100).ok());
  ASSERT_TRUE(
      owner->Call(MessageType::kSeal, {{"ids", {foreign.value()}}}).ok());
  std::vector<uint64_t> sizes;
  auto back = owner->ReadBlobs({foreign}, &sizes);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(std::memcmp(back->data(), bytes.data(), 100), 0);
  ExpectServing();
}

TEST_F(RpcTest, MalformedBulkFramesAreAnErrorAndAClose) {
  StartDaemon();
  auto make = [](uint32_t length, uint16_t type, uint16_t flags) {
    std::vector<uint8_t> f(protocol::kBulkHeaderSize, 0);
    std::memcpy(f.data(), &length, 4);
    std::memcpy(f.data() + 4, &type, 2);
    std::memcpy(f.data() + 6, &flags, 2);
    return f;
  };
  const uint16_t kData = static_cast<uint16_t>(MessageType::kBlobData);
  struct Case {
    bool hello;
    std::vector<uint8_t> frame;
    std::string says;
  } cases[] = {
      {false, make(16, kData, 1), "first message must be Hello"},
      {true, make(15, kData, 1), "shorter than its 16-byte preamble"},
      {true, make(16 + (8u << 20) + 1, kData, 1), "exceeds the chunk limit"},
      {true, make(16, static_cast<uint16_t>(MessageType::kSeal), 1),
       "must be BlobData, got Seal"},
      {true, make(16, kData, 3), "bulk frame flags must be 1, got 3"},
      {true, make(16, kData, 2), "frame flags must be 0, got 2"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.says);
    auto raw = Tcp(c.hello);
    ASSERT_TRUE(raw);
    ASSERT_TRUE(raw->SendRaw(c.frame.data(), c.frame.size()).ok());
    auto error = raw->ReadFrame();
    ASSERT_TRUE(error.ok()) << error.status();
    ASSERT_EQ(error->type, static_cast<uint16_t>(MessageType::kError));
    Status st = protocol::StatusFromErrorBody(error->body);
    EXPECT_NE(st.message().find(c.says), std::string::npos) << st;
    EXPECT_TRUE(raw->ExpectClosed().ok());
  }
  ExpectServing();
}

// ------------------------------------------------------------ disconnects

TEST_F(RpcTest, DisconnectingMidWriteBlobAbortsTheBlob) {
  StartDaemon();
  uint64_t used_before = StatusNow()["used"];
  {
    auto writer = Tcp();
    ASSERT_TRUE(writer);
    ObjectID id = CreateBlobs(writer.get(), {16 * kMiB})[0];
    std::vector<uint8_t> part = Pattern(kMiB, 3);
    // A chunk header announcing 8 MiB, then only 1 MiB of it.
    auto header = protocol::EncodeBulkHeader(MessageType::kBlobData, id, 0,
                                             protocol::kMaxBulkChunk);
    ASSERT_TRUE(writer->SendRaw(header.data(), header.size()).ok());
    ASSERT_TRUE(writer->SendRaw(part.data(), part.size()).ok());
    EXPECT_EQ(StatusNow()["unsealed_blobs"], 1);
  }  // closes mid-chunk
  WaitForClients(1);
  json st = StatusNow();
  EXPECT_EQ(st["unsealed_blobs"], 0);
  EXPECT_EQ(st["used"], used_before);
  ExpectServing();
}

TEST_F(RpcTest, DisconnectingMidReadBlobsReleasesTheHolds) {
  StartDaemon();
  std::vector<uint8_t> data = Pattern(64 * kMiB, 9);
  ObjectID id = PutOverIpc(data);
  ASSERT_TRUE(id.valid());
  for (int bytes_read : {0, 1}) {
    SCOPED_TRACE(bytes_read ? "after some bytes" : "before any byte");
    auto reader = Tcp();
    ASSERT_TRUE(reader);
    auto sizes = reader->StartReadBlobs({id});
    ASSERT_TRUE(sizes.ok());
    EXPECT_EQ(StatusNow()["held_bytes"], 64 * kMiB);
    if (bytes_read) {  // one chunk of the eight
      std::vector<uint8_t> first(protocol::kMaxBulkChunk);
      ASSERT_TRUE(
          reader->ReceiveBlobs({id}, {protocol::kMaxBulkChunk}, first.data())
              .ok());
      EXPECT_EQ(std::memcmp(first.data(), data.data(), first.size()), 0);
    }
    reader.reset();     // with most of the blob unread
    WaitForClients(2);  // the observer and the IPC client
    EXPECT_EQ(StatusNow()["held_bytes"], 0);
  }
  // The blob is intact for the next reader.
  auto reader = Tcp();
  ASSERT_TRUE(reader);
  std::vector<uint64_t> sizes;
  auto bytes = reader->ReadBlobs({id}, &sizes);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(*bytes, data);
  ExpectServing();
}

// --------------------------------------------------- the fuzzer's corpus

TEST_F(RpcTest, TheFuzzCorpusSentOverTcpLeavesTheDaemonServingOthers) {
  StartDaemon(/*token=*/false, "127.0.0.1:0",
              {"--size", "64M", "--max-frame", "1M"});
  // Well-behaved clients connected throughout, with something stored.
  auto keeper = Tcp();
  ASSERT_TRUE(keeper);
  auto ipc = Client::Connect(daemon_->socket());
  ASSERT_TRUE(ipc.ok());
  const char text[] = "precious";
  auto kept = (*ipc)->PutBlob(text, sizeof(text));
  ASSERT_TRUE(kept.ok());

  size_t files = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(TRELLIS_FUZZ_CORPUS)) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::vector<uint8_t> input((std::istreambuf_iterator<char>(in)), {});
    // Bytes 0-1 steer the fuzzer (frame limit, chunking); the rest is what
    // a peer sent.
    ASSERT_GE(input.size(), 2u) << entry.path();
    for (bool hello : {false, true}) {
      SCOPED_TRACE(entry.path().filename().string() +
                   (hello ? " after Hello" : " without Hello"));
      auto raw = Tcp(hello);
      ASSERT_TRUE(raw);
      ASSERT_TRUE(raw->SendRaw(input.data() + 2, input.size() - 2).ok());
      EXPECT_TRUE(raw->FinishAndDrain().ok());
    }
    ++files;
  }
  EXPECT_GE(files, 20u);
  WaitForClients(2 + 1);  // observer, keeper and the IPC client
  EXPECT_TRUE(keeper->Call(MessageType::kStatus, json::object()).ok());
  std::vector<uint64_t> sizes;
  auto back = keeper->ReadBlobs({*kept}, &sizes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_STREQ(reinterpret_cast<const char*>(back->data()), text);
  auto blob = (*ipc)->GetBlob(*kept);
  ASSERT_TRUE(blob.ok());
  EXPECT_STREQ(reinterpret_cast<const char*>(blob->data()), text);
  ExpectServing();
}

}  // namespace
}  // namespace trellis
