#include "common/fd_passing.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace trellis {
namespace {

class FdPassingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int fds[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    a_.Reset(fds[0]);
    b_.Reset(fds[1]);
  }
  UniqueFd a_, b_;
};

// A memfd named `name` holding `content`.
UniqueFd MemFd(const char* name, const std::string& content) {
  UniqueFd fd(memfd_create(name, MFD_CLOEXEC));
  EXPECT_TRUE(fd.valid());
  EXPECT_EQ(write(fd.get(), content.data(), content.size()),
            static_cast<ssize_t>(content.size()));
  return fd;
}

std::string ContentOf(int fd) {
  char buffer[64] = {};
  ssize_t n = pread(fd, buffer, sizeof(buffer), 0);
  return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : "";
}

// How many of this process's descriptors are the memfd called `name`.
int OpenCount(const std::string& name) {
  int count = 0;
  for (int fd = 0; fd < 1024; ++fd) {
    char link[256];
    std::string path = "/proc/self/fd/" + std::to_string(fd);
    ssize_t n = readlink(path.c_str(), link, sizeof(link) - 1);
    if (n <= 0) continue;
    if (std::string(link, static_cast<size_t>(n)).rfind("/memfd:" + name, 0) ==
        0) {
      ++count;
    }
  }
  return count;
}

TEST_F(FdPassingTest, BytesAndADescriptorArriveTogether) {
  UniqueFd sent = MemFd("fdpass-one", "arena");
  auto n = SendWithFd(a_.get(), "hello", 5, sent.get());
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 5u);

  char buffer[16];
  UniqueFd received;
  auto got = ReceiveWithFd(b_.get(), buffer, sizeof(buffer), &received);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(std::string(buffer, *got), "hello");
  ASSERT_TRUE(received.valid());
  EXPECT_NE(received.get(), sent.get());
  EXPECT_EQ(ContentOf(received.get()), "arena");  // the same file
  EXPECT_TRUE(fcntl(received.get(), F_GETFD) & FD_CLOEXEC);
}

TEST_F(FdPassingTest, NoDescriptorLeavesTheHolderAlone) {
  ASSERT_TRUE(SendWithFd(a_.get(), "abc", 3, -1).ok());
  UniqueFd held = MemFd("fdpass-held", "kept");
  int before = held.get();
  char buffer[16];
  auto got = ReceiveWithFd(b_.get(), buffer, sizeof(buffer), &held);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(std::string(buffer, *got), "abc");
  EXPECT_EQ(held.get(), before);
  EXPECT_EQ(ContentOf(held.get()), "kept");
}

TEST_F(FdPassingTest, DescriptorsBeyondTheFirstAreClosed) {
  UniqueFd first = MemFd("fdpass-first", "1");
  UniqueFd second = MemFd("fdpass-second", "2");
  // Two descriptors in one message, as a misbehaving peer might send.
  int both[2] = {first.get(), second.get()};
  char byte = 'x';
  struct iovec iov = {&byte, 1};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(both))] = {};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
  cmsg->cmsg_level = SOL_SOCKET;
  cmsg->cmsg_type = SCM_RIGHTS;
  cmsg->cmsg_len = CMSG_LEN(sizeof(both));
  std::memcpy(CMSG_DATA(cmsg), both, sizeof(both));
  ASSERT_EQ(sendmsg(a_.get(), &msg, 0), 1);
  first.Reset();
  second.Reset();
  ASSERT_EQ(OpenCount("fdpass-first"), 0);  // only in flight now
  ASSERT_EQ(OpenCount("fdpass-second"), 0);

  char buffer[4];
  UniqueFd received;
  auto got = ReceiveWithFd(b_.get(), buffer, sizeof(buffer), &received);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, 1u);
  EXPECT_EQ(ContentOf(received.get()), "1");
  EXPECT_EQ(OpenCount("fdpass-first"), 1);
  EXPECT_EQ(OpenCount("fdpass-second"), 0);  // received and closed
}

TEST_F(FdPassingTest, ANewDescriptorReplacesAndClosesTheOneHeld) {
  UniqueFd one = MemFd("fdpass-old", "old");
  UniqueFd two = MemFd("fdpass-new", "new");
  ASSERT_TRUE(SendWithFd(a_.get(), "1", 1, one.get()).ok());
  ASSERT_TRUE(SendWithFd(a_.get(), "2", 1, two.get()).ok());
  one.Reset();
  two.Reset();
  UniqueFd held;
  char byte;
  ASSERT_TRUE(ReceiveWithFd(b_.get(), &byte, 1, &held).ok());
  EXPECT_EQ(ContentOf(held.get()), "old");
  ASSERT_TRUE(ReceiveWithFd(b_.get(), &byte, 1, &held).ok());
  EXPECT_EQ(ContentOf(held.get()), "new");
  EXPECT_EQ(OpenCount("fdpass-old"), 0);
}

TEST_F(FdPassingTest, LargeWritesArriveWholeWithTheDescriptorOnce) {
  // Larger than a socket buffer: the sender writes it in several parts.
  std::vector<uint8_t> data(4 << 20);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i);
  UniqueFd sent = MemFd("fdpass-large", "big");
  std::vector<uint8_t> got;
  int descriptors = 0;
  std::thread reader([&] {
    std::vector<uint8_t> buffer(64 * 1024);
    while (got.size() < data.size()) {
      UniqueFd fd;
      auto n = ReceiveWithFd(b_.get(), buffer.data(), buffer.size(), &fd);
      if (!n.ok() || *n == 0) break;
      if (fd.valid()) ++descriptors;
      got.insert(got.end(), buffer.begin(), buffer.begin() + *n);
    }
  });
  auto n = SendWithFd(a_.get(), data.data(), data.size(), sent.get());
  reader.join();
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, data.size());
  EXPECT_EQ(got, data);
  EXPECT_EQ(descriptors, 1);
}

TEST_F(FdPassingTest, NonBlockingSendStopsWhenTheBufferIsFull) {
  ASSERT_EQ(fcntl(a_.get(), F_SETFL, O_NONBLOCK), 0);
  std::vector<uint8_t> data(16 << 20);
  auto n = SendWithFd(a_.get(), data.data(), data.size(), -1);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_GT(*n, 0u);
  EXPECT_LT(*n, data.size());
}

TEST_F(FdPassingTest, ErrorsAreStatuses) {
  UniqueFd fd = MemFd("fdpass-err", "");
  EXPECT_TRUE(SendWithFd(a_.get(), "", 0, fd.get()).status().IsInvalid());
  b_.Reset();  // the peer is gone
  auto sent = SendWithFd(a_.get(), "x", 1, -1);
  EXPECT_TRUE(sent.status().IsDisconnected()) << sent.status();
  char byte;
  UniqueFd none;
  auto eof = ReceiveWithFd(a_.get(), &byte, 1, &none);
  ASSERT_TRUE(eof.ok()) << eof.status();
  EXPECT_EQ(*eof, 0u);  // end of stream
  EXPECT_TRUE(ReceiveWithFd(-1, &byte, 1, &none).status().IsIOError());
}

}  // namespace
}  // namespace trellis
