// Passing file descriptors over UNIX stream sockets (SCM_RIGHTS): the one
// place trellis calls sendmsg/recvmsg with ancillary data. The daemon sends
// the arena's memfd with its Hello reply; the client receives it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include "trellis/status.h"

namespace trellis {

// Owns a file descriptor: closes it on destruction. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) Reset(other.Release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  // Gives up ownership; returns the descriptor (-1 if none).
  int Release() { return std::exchange(fd_, -1); }
  // Closes the descriptor held, if any, and takes `fd`.
  void Reset(int fd = -1);

 private:
  int fd_ = -1;
};

// Writes [data, data+size) to the connected UNIX stream socket `socket`,
// with descriptor `fd` attached to the first bytes (no descriptor if fd < 0;
// the caller keeps its own copy of fd either way). EINTR is retried and a
// partial write continues with the rest (the descriptor travels once, with
// the first part). Never raises SIGPIPE.
//
// Returns the number of bytes written: `size` on a blocking socket; on a
// non-blocking one it stops when the socket buffer is full and returns what
// was written so far, the descriptor having been passed iff the count is
// > 0. Invalid if a descriptor is to be passed with no bytes (a stream
// socket cannot carry one alone); Disconnected (with strerror) if the write
// fails, e.g. the peer closed.
Result<size_t> SendWithFd(int socket, const void* data, size_t size, int fd);

// Writes [head, head+head_size) then [payload, payload+payload_size) to the
// stream socket `socket` with gathered writes (sendmsg), blocking until all
// is written; EINTR is retried and a partial write continues with the rest.
// Never raises SIGPIPE. Disconnected (with strerror) if a write fails.
Status SendAllGathered(int socket, const uint8_t* head, size_t head_size,
                       const uint8_t* payload, size_t payload_size);

// Reads up to `capacity` bytes from the UNIX stream socket `socket` (blocking
// as the socket does; EINTR retried) together with any descriptors passed
// with them. The first descriptor received (close-on-exec) is stored in
// `*fd`, replacing (and closing) what it held; descriptors beyond the first
// are closed, so a misbehaving peer cannot make this process leak them.
// With none attached, *fd is left as it was.
//
// Returns the number of bytes read; 0 means the peer closed the connection.
// IOError (with strerror) if the read fails, including EAGAIN on a
// non-blocking socket with nothing to read.
Result<size_t> ReceiveWithFd(int socket, void* buffer, size_t capacity,
                             UniqueFd* fd);

}  // namespace trellis
