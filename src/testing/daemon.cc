#include "testing/daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
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

// A waitpid status as an exit code, or 128+signal.
int ExitCode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

Result<pid_t> Spawn(const std::string& path,
                    const std::vector<std::string>& args, int stderr_fd) {
  // Built before fork: the child may only make async-signal-safe calls (the
  // caller may have threads).
  std::vector<std::string> strings = {path};
  strings.insert(strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  // The child writes errno here if exec fails; a successful exec closes it.
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) return Status::FromErrno("pipe2", errno);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    close(report[0]);
    close(report[1]);
    return Status::FromErrno("fork", err);
  }
  if (pid == 0) {
    close(report[0]);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);  // the parent is already gone
    if (stderr_fd >= 0) dup2(stderr_fd, 2);
    execv(argv[0], argv.data());
    int err = errno;
    (void)!write(report[1], &err, sizeof(err));
    _exit(127);
  }
  close(report[1]);
  int err = 0;
  ssize_t n;
  while ((n = read(report[0], &err, sizeof(err))) < 0 && errno == EINTR) {
  }
  close(report[0]);
  if (n == sizeof(err)) {
    WaitChild(pid);
    return Status::FromErrno("cannot run " + path, err);
  }
  return pid;
}

std::string BuiltTrellisd() { return TRELLISD_PATH; }

int WaitChild(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return ExitCode(status);
}

Result<std::unique_ptr<DaemonProcess>> DaemonProcess::Start(
    const std::vector<std::string>& args) {
  DaemonOptions options;
  options.args = args;
  return Start(options);
}

Result<std::unique_ptr<DaemonProcess>> DaemonProcess::Start(
    const DaemonOptions& options) {
  using Clock = std::chrono::steady_clock;
  std::unique_ptr<DaemonProcess> d(new DaemonProcess());
  char tmpl[] = "/tmp/trellis-test.XXXXXX";
  if (!mkdtemp(tmpl)) return Status::FromErrno("mkdtemp", errno);
  d->dir_ = tmpl;  // from here on, returning `d`'s error removes the dir
  d->socket_ = d->dir_ + "/trellis.sock";
  std::vector<std::string> args = {"--socket", d->socket_, "--log-level",
                                   "warn"};
  args.insert(args.end(), options.args.begin(), options.args.end());
  std::string port_file = d->dir_ + "/rpc.port";
  if (!options.rpc.empty()) {
    args.insert(args.end(),
                {"--rpc", options.rpc, "--rpc-port-file", port_file});
  }
  int log_fd = -1;
  if (options.capture_stderr) {
    log_fd = open((d->dir_ + "/stderr.log").c_str(),
                  O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (log_fd < 0) return Status::FromErrno("open stderr.log", errno);
  }
  auto pid = Spawn(options.trellisd, args, log_fd);
  if (log_fd >= 0) close(log_fd);
  if (!pid.ok()) return pid.status();
  d->pid_ = *pid;
  auto deadline = Clock::now() + options.start_timeout;
  while (!Connectable(d->socket_)) {
    int status;
    if (waitpid(d->pid_, &status, WNOHANG) == d->pid_) {
      d->pid_ = -1;
      return Status::IOError(options.trellisd +
                             " exited during start-up with status " +
                             std::to_string(ExitCode(status)));
    }
    if (Clock::now() >= deadline) {
      return Status::Timeout(
          options.trellisd + " did not accept connections within " +
          std::to_string(options.start_timeout.count()) + " ms");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!options.rpc.empty()) {  // written before the socket listens
    std::ifstream in(port_file);
    unsigned port = 0;
    if (!(in >> port) || port == 0 || port > 65535) {
      return Status::IOError(options.trellisd + " wrote no RPC port to " +
                             port_file);
    }
    d->rpc_port_ = static_cast<uint16_t>(port);
  }
  return d;
}

std::string DaemonProcess::Log() const {
  std::ifstream in(dir_ + "/stderr.log");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

int TerminateChild(pid_t* pid) {
  if (*pid < 0) return -1;
  kill(*pid, SIGTERM);
  int code = WaitChild(*pid);
  *pid = -1;
  return code;
}

int DaemonProcess::Stop() { return TerminateChild(&pid_); }

DaemonProcess::~DaemonProcess() {
  Stop();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

RunResult RunDaemonToExit(const std::vector<std::string>& args,
                          int timeout_seconds) {
  char path[] = "/tmp/trellis-stderr.XXXXXX";
  int fd = mkstemp(path);
  auto pid = Spawn(BuiltTrellisd(), args, fd);
  if (!pid.ok()) {
    close(fd);
    unlink(path);
    return {127, pid.status().message()};
  }
  int code = -1;
  for (int i = 0; i < timeout_seconds * 100; ++i) {
    int status;
    if (waitpid(*pid, &status, WNOHANG) == *pid) {
      code = ExitCode(status);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (code == -1) {
    kill(*pid, SIGKILL);
    WaitChild(*pid);
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
