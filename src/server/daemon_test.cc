// trellisd as a process: its command line, its socket, and its resilience to
// malformed input from misbehaving clients.
#include "testing/daemon.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/protocol.h"
#include "trellis/client.h"

namespace trellis {
namespace {

using protocol::json;
using protocol::MessageType;
using testing::DaemonProcess;
using testing::RunDaemonToExit;

TEST(DaemonCliTest, RefusesASocketServedByALiveDaemon) {
  auto d = DaemonProcess::Start();
  ASSERT_TRUE(d.ok()) << d.status();
  auto r = RunDaemonToExit({"--socket", (*d)->socket(), "--size", "16M"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.stderr_text.find("already serves"), std::string::npos)
      << r.stderr_text;
  // The live daemon is unaffected.
  EXPECT_TRUE(Client::Connect((*d)->socket()).ok());
}

TEST(DaemonCliTest, RefusesUnparsableOrOversizedSizes) {
  auto bad =
      RunDaemonToExit({"--socket", "/tmp/trellis-never.sock", "--size", "12Q"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.stderr_text.find("cannot parse size '12Q'"), std::string::npos)
      << bad.stderr_text;
  auto huge = RunDaemonToExit(
      {"--socket", "/tmp/trellis-never.sock", "--size", "100T"});
  EXPECT_NE(huge.exit_code, 0);
  EXPECT_NE(huge.stderr_text.find("more than the memory"), std::string::npos)
      << huge.stderr_text;
  EXPECT_EQ(std::count(huge.stderr_text.begin(), huge.stderr_text.end(), '\n'),
            1);  // one line
}

TEST(DaemonCliTest, RemovesAStaleSocketFile) {
  char dir[] = "/tmp/trellis-stale.XXXXXX";
  ASSERT_TRUE(mkdtemp(dir));
  struct RemoveDir {  // also when an ASSERT below returns early
    const char* dir;
    ~RemoveDir() {
      std::error_code ignored;
      std::filesystem::remove_all(dir, ignored);
    }
  } cleanup{dir};
  std::string path = std::string(dir) + "/trellis.sock";
  // A socket file nobody listens on, as a killed daemon leaves behind.
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  close(fd);
  auto d = DaemonProcess::Start({"--size", "16M"});  // its own socket
  ASSERT_TRUE(d.ok());
  auto second = RunDaemonToExit({"--socket", path, "--size", "16M"}, 1);
  // It started (and was still serving when the 1 s run limit killed it).
  EXPECT_EQ(second.exit_code, -1) << second.stderr_text;
  EXPECT_NE(second.stderr_text.find("removing stale socket"),
            std::string::npos);
}

TEST(DaemonCliTest, SigtermRemovesTheSocketAndTheSocketIsOwnerOnly) {
  auto d = DaemonProcess::Start({"--size", "16M"});
  ASSERT_TRUE(d.ok());
  struct stat st;
  ASSERT_EQ(stat((*d)->socket().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ((*d)->Stop(), 0);
  EXPECT_NE(access((*d)->socket().c_str(), F_OK), 0);
}

TEST(DaemonCliTest, SocketModeFlagIsApplied) {
  auto d = DaemonProcess::Start({"--size", "16M", "--socket-mode", "0660"});
  ASSERT_TRUE(d.ok());
  struct stat st;
  ASSERT_EQ(stat((*d)->socket().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
}

TEST(DaemonCliTest, ReserveFaultsInTheArena) {
  auto d = DaemonProcess::Start({"--size", "32M", "--reserve"});
  ASSERT_TRUE(d.ok()) << d.status();
  auto c = Client::Connect((*d)->socket());
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE((*c)->Status()->reserved);
}

// CPU time (user + system) of process `pid` so far, in clock ticks.
long CpuTicks(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)),
                   std::istreambuf_iterator<char>());
  std::istringstream fields(text.substr(text.rfind(')') + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) stime = std::stol(field);
  }
  return utime + stime;
}

class BusyPollTest : public ::testing::TestWithParam<const char*> {};

// Fixed (500 us) or adaptive (auto, the default), a polling daemon serves
// as usual, answers a waiting request when another client's request comes,
// sleeps once idle and stops on SIGTERM.
TEST_P(BusyPollTest, ServesAsUsualSleepsWhenIdleAndStops) {
  auto d =
      DaemonProcess::Start({"--size", "16M", "--busy-poll-us", GetParam()});
  ASSERT_TRUE(d.ok()) << d.status();
  auto a = Client::Connect((*d)->socket());
  auto b = Client::Connect((*d)->socket());
  ASSERT_TRUE(a.ok() && b.ok());
  // A waiting request is answered when another client's request comes.
  std::thread waiter([&] {
    auto id = (*a)->GetName("late", /*wait=*/true, std::chrono::seconds(10));
    EXPECT_TRUE(id.ok()) << id.status();
  });
  std::vector<uint8_t> bytes(1000, 7);
  for (int i = 0; i < 200; ++i) {
    auto id = (*b)->PutBlob(bytes.data(), bytes.size());
    EXPECT_TRUE(id.ok()) << id.status();
    if (!id.ok()) break;
    auto blob = (*b)->GetBlob(*id);
    EXPECT_TRUE(blob.ok() && blob->data()[999] == 7) << blob.status();
    if (i == 100) {
      EXPECT_TRUE((*b)->PutName(*id, "late").ok());
    }
    // Gaps of ~100 us between requests: an adaptive window grows.
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  waiter.join();
  // Idle, it sleeps: far less CPU than the wall time (polling would use
  // all of it).
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  long before = CpuTicks((*d)->pid());
  std::this_thread::sleep_for(std::chrono::seconds(1));
  long used = CpuTicks((*d)->pid()) - before;
  EXPECT_LT(used, sysconf(_SC_CLK_TCK) / 2) << used << " ticks in 1 s idle";
  EXPECT_EQ((*d)->Stop(), 0);
}

INSTANTIATE_TEST_SUITE_P(FixedOrAuto, BusyPollTest,
                         ::testing::Values("500", "auto"));

TEST(DaemonCliTest, BusyPollRefusesWhatIsNeitherAutoNorMicroseconds) {
  for (const char* bad : {"-1", "100001", "often", "", "1.5"}) {
    auto run = RunDaemonToExit(
        {"--socket", "/tmp/trellis-never.sock", "--busy-poll-us", bad});
    EXPECT_NE(run.exit_code, 0) << bad;
    EXPECT_NE(run.stderr_text.find("--busy-poll-us"), std::string::npos)
        << bad << ": " << run.stderr_text;
  }
}

TEST(DaemonCliTest, TheInstanceIdIsTheOneTheMetadataStoreAssigned) {
  // The local metadata store assigns --instance-id, else a random id.
  auto d = DaemonProcess::Start({"--size", "16M", "--instance-id", "4242"});
  ASSERT_TRUE(d.ok()) << d.status();
  auto c = Client::Connect((*d)->socket());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ((*c)->instance_id(), 4242);
  EXPECT_EQ((*c)->Status()->instance_id, 4242);
  uint8_t byte = 1;
  auto id = (*c)->PutBlob(&byte, 1);
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(id->instance_id(), 4242);
  auto random = DaemonProcess::Start({"--size", "16M"});
  ASSERT_TRUE(random.ok());
  auto r = Client::Connect((*random)->socket());
  ASSERT_TRUE(r.ok());
  EXPECT_NE((*r)->instance_id(), 0);
}

// A raw connection for speaking (bad) protocol to the daemon.
class RawConnection {
 public:
  explicit RawConnection(const std::string& path) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    connected_ =
        connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    struct timeval tv = {10, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~RawConnection() { close(fd_); }
  bool connected() const { return connected_; }

  void Send(const std::vector<uint8_t>& bytes) {
    ASSERT_EQ(send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }
  void Hello() {
    Send(protocol::EncodeFrame(MessageType::kHello,
                               {{"version", protocol::kProtocolVersion}}));
    auto reply = NextFrame();
    ASSERT_TRUE(reply.has_value());
    ASSERT_EQ(reply->type, static_cast<uint16_t>(MessageType::kReply));
  }
  // The next frame, or nullopt once the daemon closed the connection.
  std::optional<protocol::Frame> NextFrame() {
    while (true) {
      auto f = decoder_.Next();
      if (!f.ok()) return std::nullopt;
      if (f->has_value()) return **f;
      uint8_t buf[4096];
      ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) return std::nullopt;
      decoder_.Feed(buf, n);
    }
  }
  // Expects an Error frame whose message contains `text`, then EOF.
  void ExpectErrorThenClose(const std::string& text) {
    auto f = NextFrame();
    ASSERT_TRUE(f.has_value()) << "no error reply";
    ASSERT_EQ(f->type, static_cast<uint16_t>(MessageType::kError));
    Status st = protocol::StatusFromErrorBody(f->body);
    EXPECT_NE(st.message().find(text), std::string::npos) << st;
    EXPECT_FALSE(NextFrame().has_value()) << "connection left open";
  }

 private:
  int fd_;
  bool connected_ = false;
  protocol::FrameDecoder decoder_{1u << 30};
};

class MalformedInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = DaemonProcess::Start({"--size", "16M", "--max-frame", "1M"});
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = std::move(*d);
    auto c = Client::Connect(daemon_->socket());
    ASSERT_TRUE(c.ok());
    keeper_ = std::move(*c);
    const char text[] = "precious";
    kept_ = *keeper_->PutBlob(text, sizeof(text));
    ASSERT_TRUE(keeper_->PutName(kept_, "precious").ok());
  }

  // After each attack: the daemon still serves a new client, and what was
  // stored is intact.
  void TearDown() override {
    auto c = Client::Connect(daemon_->socket());
    ASSERT_TRUE(c.ok()) << c.status();
    auto id = (*c)->GetName("precious");
    ASSERT_TRUE(id.ok());
    auto blob = (*c)->GetBlob(*id);
    ASSERT_TRUE(blob.ok());
    EXPECT_STREQ(reinterpret_cast<const char*>(blob->data()), "precious");
    EXPECT_TRUE(keeper_->Status().ok());
  }

  std::unique_ptr<DaemonProcess> daemon_;
  std::unique_ptr<Client> keeper_;
  ObjectID kept_;
};

TEST_F(MalformedInputTest, RandomBytes) {
  std::mt19937 rng(3);
  for (int round = 0; round < 20; ++round) {
    RawConnection raw(daemon_->socket());
    ASSERT_TRUE(raw.connected());
    std::vector<uint8_t> junk(1 + rng() % 4096);
    for (auto& b : junk) b = static_cast<uint8_t>(rng());
    if (round % 2) raw.Hello();
    raw.Send(junk);
    // Either an error reply and a close, or (if the junk is an incomplete
    // frame) the daemon keeps waiting; both are fine as long as it survives.
  }
}

// The daemon reads requests by hand once the socket is readable (until it
// would block): a frame arriving a byte at a time, and many pipelined
// requests larger than its read buffer, are all served, in order, while
// another client is served too.
TEST_F(MalformedInputTest, SplitAndPipelinedRequestsAreAllServedInOrder) {
  RawConnection raw(daemon_->socket());
  raw.Hello();
  auto status = protocol::EncodeFrame(MessageType::kStatus, json::object());
  for (uint8_t byte : status) {
    raw.Send({byte});
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  auto first = raw.NextFrame();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->type, static_cast<uint16_t>(MessageType::kReply));
  // 20,000 requests in one go: several read buffers' worth.
  const int kRequests = 20000;
  std::vector<uint8_t> many;
  for (int i = 0; i < kRequests; ++i) {
    protocol::AppendFrame(
        MessageType::kPutName,
        {{"name", "n" + std::to_string(i)}, {"id", kept_.value()}}, &many);
  }
  std::thread sender([&] { raw.Send(many); });
  EXPECT_TRUE(keeper_->Status().ok());  // served meanwhile
  for (int i = 0; i < kRequests; ++i) {
    auto reply = raw.NextFrame();
    ASSERT_TRUE(reply.has_value()) << "reply " << i;
    ASSERT_EQ(reply->type, static_cast<uint16_t>(MessageType::kReply))
        << "reply " << i;
  }
  sender.join();
  auto last = keeper_->GetName("n" + std::to_string(kRequests - 1));
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_EQ(*last, kept_);
}

TEST_F(MalformedInputTest, HugeLengthPrefix) {
  RawConnection raw(daemon_->socket());
  raw.Hello();
  raw.Send({0xff, 0xff, 0xff, 0xff, 0x07, 0x00, 0x00, 0x00});
  raw.ExpectErrorThenClose("exceeds the limit");
}

TEST_F(MalformedInputTest, TruncatedFrameThenHangUp) {
  RawConnection raw(daemon_->socket());
  raw.Hello();
  auto frame = protocol::EncodeFrame(MessageType::kStatus, {{"x", 1}});
  frame.resize(frame.size() - 2);
  raw.Send(frame);
}  // closes mid-frame

TEST_F(MalformedInputTest, UnknownMessageType) {
  RawConnection raw(daemon_->socket());
  raw.Hello();
  raw.Send(
      protocol::EncodeFrame(static_cast<MessageType>(999), json::object()));
  raw.ExpectErrorThenClose("unexpected message type Unknown(999)");
}

TEST_F(MalformedInputTest, RequestBeforeHelloAndWrongVersion) {
  {
    RawConnection raw(daemon_->socket());
    raw.Send(protocol::EncodeFrame(MessageType::kStatus, json::object()));
    raw.ExpectErrorThenClose("first message must be Hello");
  }
  {
    RawConnection raw(daemon_->socket());
    raw.Send(protocol::EncodeFrame(MessageType::kHello, {{"version", 99}}));
    raw.ExpectErrorThenClose("protocol version 99 is not supported");
  }
}

TEST_F(MalformedInputTest, BodyThatIsNotMessagePack) {
  RawConnection raw(daemon_->socket());
  raw.Hello();
  std::vector<uint8_t> frame = {3, 0, 0, 0, 17, 0, 0, 0, 0xc1, 0xc1, 0xc1};
  raw.Send(frame);
  raw.ExpectErrorThenClose("not valid MessagePack");
}

TEST_F(MalformedInputTest,
       WellFramedButWrongFieldsGetAnErrorAndKeepTheConnection) {
  RawConnection raw(daemon_->socket());
  raw.Hello();
  raw.Send(protocol::EncodeFrame(MessageType::kGetBlobs, {{"ids", "nope"}}));
  auto f = raw.NextFrame();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->type, static_cast<uint16_t>(MessageType::kError));
  EXPECT_NE(protocol::StatusFromErrorBody(f->body).message().find("'ids'"),
            std::string::npos);
  // Semantic errors are not protocol errors: the connection stays usable.
  raw.Send(protocol::EncodeFrame(MessageType::kStatus, json::object()));
  auto status = raw.NextFrame();
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->type, static_cast<uint16_t>(MessageType::kReply));
}

TEST_F(MalformedInputTest, HostileTreesAndSizes) {
  RawConnection raw(daemon_->socket());
  raw.Hello();
  const std::vector<json> bodies = {
      {{"sizes", {uint64_t{1} << 62}}},  // CreateBlobs: too big
      {{"tree", {{"typename", "x"}, {"members", {{"m", {{"id", 5}}}}}}}},
      {{"tree", {{"id", kept_.value()}}}},           // root a reference
      {{"ids", {kept_.value()}}, {"deep", "yes"}},   // Delete: bad flag
      {{"ids", {kept_.value()}}, {"names", {"x"}}},  // GetMeta: both
      {{"names", "x"}},                              // GetMeta: not a list
      {{"names", {"x", 7}}},                         // GetMeta: not a str
      {{"names", {"nobody"}}},                       // GetMeta: unbound
  };
  const MessageType types[] = {
      MessageType::kCreateBlobs,  MessageType::kCreateObject,
      MessageType::kCreateObject, MessageType::kDelete,
      MessageType::kGetMeta,      MessageType::kGetMeta,
      MessageType::kGetMeta,      MessageType::kGetMeta};
  for (size_t i = 0; i < bodies.size(); ++i) {
    raw.Send(protocol::EncodeFrame(types[i], bodies[i]));
    auto f = raw.NextFrame();
    ASSERT_TRUE(f.has_value()) << i;
    EXPECT_EQ(f->type, static_cast<uint16_t>(MessageType::kError)) << i;
  }
}

}  // namespace
}  // namespace trellis
