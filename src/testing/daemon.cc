#include "testing/daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <thread>

namespace trellis::testing {
namespace {

bool Connectable(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

pid_t Spawn(const std::vector<std::string>& args, int stderr_fd) {
  pid_t pid = fork();
  if (pid == 0) {
    if (stderr_fd >= 0) dup2(stderr_fd, 2);
    std::vector<char*> argv;
    std::string path = TRELLISD_PATH;
    argv.push_back(path.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(path.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

}  // namespace

int WaitChild(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

Result<std::unique_ptr<DaemonProcess>> DaemonProcess::Start(
    const std::vector<std::string>& args) {
  std::unique_ptr<DaemonProcess> d(new DaemonProcess());
  char tmpl[] = "/tmp/trellis-test.XXXXXX";
  if (!mkdtemp(tmpl)) return Status::FromErrno("mkdtemp", errno);
  d->dir_ = tmpl;
  d->socket_ = d->dir_ + "/trellis.sock";
  std::vector<std::string> full = {"--socket", d->socket_, "--log-level",
                                   "warn"};
  full.insert(full.end(), args.begin(), args.end());
  d->pid_ = Spawn(full, -1);
  for (int i = 0; i < 500; ++i) {
    if (Connectable(d->socket_)) return d;
    int status;
    if (waitpid(d->pid_, &status, WNOHANG) == d->pid_) {
      d->pid_ = -1;
      return Status::IOError("trellisd exited during start-up");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return Status::Timeout("trellisd did not start within 5 s");
}

int DaemonProcess::Stop() {
  if (pid_ < 0) return -1;
  kill(pid_, SIGTERM);
  int code = WaitChild(pid_);
  pid_ = -1;
  return code;
}

DaemonProcess::~DaemonProcess() {
  Stop();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

RunResult RunDaemonToExit(const std::vector<std::string>& args,
                          int timeout_seconds) {
  char path[] = "/tmp/trellis-stderr.XXXXXX";
  int fd = mkstemp(path);
  pid_t pid = Spawn(args, fd);
  int code = -1;
  for (int i = 0; i < timeout_seconds * 100; ++i) {
    int status;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (code == -1) {
    kill(pid, SIGKILL);
    WaitChild(pid);
  }
  std::string text;
  char buf[4096];
  lseek(fd, 0, SEEK_SET);
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) text.append(buf, n);
  close(fd);
  unlink(path);
  return {code, text};
}

}  // namespace trellis::testing
