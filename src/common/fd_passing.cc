#include "common/fd_passing.h"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace trellis {

void UniqueFd::Reset(int fd) {
  if (fd_ >= 0) close(fd_);
  fd_ = fd;
}

Result<size_t> SendWithFd(int socket, const void* data, size_t size, int fd) {
  if (fd >= 0 && size == 0) {
    return Status::Invalid("a descriptor must travel with at least one byte");
  }
  const auto* bytes = static_cast<const uint8_t*>(data);
  size_t done = 0;
  while (done < size) {
    ssize_t n;
    if (fd >= 0 && done == 0) {
      struct iovec iov = {const_cast<uint8_t*>(bytes), size};
      alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
      struct msghdr msg = {};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
      struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
      cmsg->cmsg_level = SOL_SOCKET;
      cmsg->cmsg_type = SCM_RIGHTS;
      cmsg->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
      n = sendmsg(socket, &msg, MSG_NOSIGNAL);
    } else {
      // No descriptor (the client's every request): plain send, which
      // costs the kernel less than building a msghdr.
      n = send(socket, bytes + done, size - done, MSG_NOSIGNAL);
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      return Status::Disconnected(std::strerror(errno));
    }
    done += static_cast<size_t>(n);
  }
  return done;
}

Result<size_t> ReceiveWithFd(int socket, void* buffer, size_t capacity,
                             UniqueFd* fd) {
  // Room for a few descriptors, so that extras arrive here and are closed
  // below (the kernel closes any that do not fit, MSG_CTRUNC).
  constexpr size_t kMaxFds = 8;
  alignas(struct cmsghdr) char control[CMSG_SPACE(kMaxFds * sizeof(int))];
  struct iovec iov = {buffer, capacity};
  struct msghdr msg = {};
  ssize_t n;
  do {
    msg = {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    n = recvmsg(socket, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Status::FromErrno("recvmsg", errno);
  bool first = true;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int received;
      std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      if (first) {
        fd->Reset(received);
        first = false;
      } else {
        close(received);
      }
    }
  }
  return static_cast<size_t>(n);
}

Status SendAllGathered(int socket, const uint8_t* head, size_t head_size,
                       const uint8_t* payload, size_t payload_size) {
  struct iovec iov[2] = {{const_cast<uint8_t*>(head), head_size},
                         {const_cast<uint8_t*>(payload), payload_size}};
  struct msghdr msg = {};
  msg.msg_iov = iov;
  msg.msg_iovlen = payload_size > 0 ? 2 : 1;
  while (iov[0].iov_len + (payload_size > 0 ? iov[1].iov_len : 0) > 0) {
    ssize_t n = sendmsg(socket, &msg, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::Disconnected(std::strerror(errno));
    for (auto& v : iov) {  // skip what was sent
      size_t used = std::min(v.iov_len, static_cast<size_t>(n));
      v.iov_base = static_cast<uint8_t*>(v.iov_base) + used;
      v.iov_len -= used;
      n -= static_cast<ssize_t>(used);
    }
  }
  return Status::OK();
}

}  // namespace trellis
