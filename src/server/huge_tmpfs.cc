#include "server/huge_tmpfs.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace trellis::server {
namespace {

constexpr uint64_t kHugePage = 2u << 20;
// Where the child mounts the tmpfs, in its own mount namespace only.
constexpr const char* kMountPoint = "/tmp";
constexpr const char* kFilePath = "/tmp/trellis-arena";

// What the child reports when a step fails (written to the socket instead
// of the descriptor).
struct ChildFailure {
  int step;
  int err;
};

enum Step {
  kUnshare = 1,
  kIdMaps,
  kPrivateMounts,
  kMount,
  kCreate,
  kUnlink,
  kSend,
};

const char* StepName(int step) {
  switch (step) {
    case kUnshare:
      return "unshare a mount namespace";
    case kIdMaps:
      return "map this user into its user namespace";
    case kPrivateMounts:
      return "make the namespace's mounts private";
    case kMount:
      return "mount a tmpfs with huge=within_size";
    case kCreate:
      return "create the arena file";
    case kUnlink:
      return "unlink the arena file";
    default:
      return "pass the arena file back";
  }
}

// Writes `text` to `path`; false on any error. Async-signal-safe (runs in
// the forked child of a possibly multi-threaded process).
bool WriteSmallFile(const char* path, const char* text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  size_t n = strlen(text);
  bool ok = write(fd, text, n) == static_cast<ssize_t>(n);
  close(fd);
  return ok;
}

// The child's work. Only system calls from here on: the parent may have
// other threads, whose locks (malloc's among them) the fork copied held.
[[noreturn]] void MakeFileInChild(int sock, bool own_user_ns,
                                  const char* uid_map, const char* gid_map,
                                  const char* options) {
  auto fail = [sock](int step) {
    ChildFailure failure{step, errno};
    (void)!write(sock, &failure, sizeof failure);
    _exit(1);
  };
  // A process that dropped root without exec is not dumpable, and then
  // its /proc/self files (uid_map among them) stay root's. This child
  // exits in a moment: it may be dumpable.
  if (own_user_ns) prctl(PR_SET_DUMPABLE, 1);
  if (unshare(CLONE_NEWNS | (own_user_ns ? CLONE_NEWUSER : 0)) != 0) {
    fail(kUnshare);
  }
  if (own_user_ns && (!WriteSmallFile("/proc/self/setgroups", "deny") ||
                      !WriteSmallFile("/proc/self/uid_map", uid_map) ||
                      !WriteSmallFile("/proc/self/gid_map", gid_map))) {
    fail(kIdMaps);
  }
  // Without this, the mount below could propagate to the parent's
  // namespace (systemd makes / a shared mount).
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    fail(kPrivateMounts);
  }
  if (mount("trellis-arena", kMountPoint, "tmpfs",
            MS_NOSUID | MS_NODEV | MS_NOEXEC, options) != 0) {
    fail(kMount);
  }
  int fd = open(kFilePath, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) fail(kCreate);
  if (unlink(kFilePath) != 0) fail(kUnlink);
  char ok = 'k';
  // SendWithFd allocates only to report an error.
  if (!SendWithFd(sock, &ok, 1, fd).ok()) fail(kSend);
  _exit(0);
}

}  // namespace

Result<UniqueFd> OpenHugePageTmpfsFile(uint64_t size) {
  if (size == 0) return Status::Invalid("arena size must be positive");
  // Everything the child needs is made before the fork.
  const uint64_t mount_size = (size + kHugePage - 1) / kHugePage * kHugePage;
  const std::string options =
      "huge=within_size,mode=0700,size=" + std::to_string(mount_size);
  const std::string uid_map = "0 " + std::to_string(geteuid()) + " 1";
  const std::string gid_map = "0 " + std::to_string(getegid()) + " 1";
  const bool own_user_ns = geteuid() != 0;

  int pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    return Status::FromErrno("socketpair for the huge-page tmpfs", errno);
  }
  UniqueFd mine(pair[0]), theirs(pair[1]);
  pid_t child = fork();
  if (child < 0)
    return Status::FromErrno("fork for the huge-page tmpfs", errno);
  if (child == 0) {
    MakeFileInChild(theirs.get(), own_user_ns, uid_map.c_str(), gid_map.c_str(),
                    options.c_str());
  }
  theirs.Reset();
  ChildFailure failure{0, 0};
  UniqueFd file;
  Result<size_t> got =
      ReceiveWithFd(mine.get(), &failure, sizeof failure, &file);
  int wstatus = 0;
  while (waitpid(child, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (file.valid()) {
    if (ftruncate(file.get(), static_cast<off_t>(size)) != 0) {
      return Status::FromErrno("ftruncate the huge-page arena file", errno);
    }
    return file;
  }
  if (!got.ok()) return got.status();
  if (*got < sizeof failure) {
    return Status::IOError("the huge-page tmpfs helper exited without a file");
  }
  return Status::IOError(
      std::string("cannot ") + StepName(failure.step) +
      " for the huge-page arena: " + std::strerror(failure.err));
}

}  // namespace trellis::server
