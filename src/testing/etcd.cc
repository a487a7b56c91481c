#include "testing/etcd.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "server/etcd_client.h"
#include "testing/daemon.h"

namespace trellis::testing {
namespace {

// Binds a TCP socket to host:0 and returns it (the caller closes it).
Result<int> BindAnyPort(const std::string& host, int* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno("socket", errno);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    close(fd);
    return Status::Invalid("not an IPv4 address: " + host);
  }
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int err = errno;
    close(fd);
    return Status::FromErrno("bind " + host + ":0", err);
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

}  // namespace

Result<int> FreeTcpPort(const std::string& host) {
  int port = 0;
  TRELLIS_ASSIGN_OR_RAISE(int fd, BindAnyPort(host, &port));
  close(fd);
  return port;
}

Result<std::unique_ptr<EtcdProcess>> EtcdProcess::Start(
    const EtcdProcessOptions& options) {
  std::unique_ptr<EtcdProcess> e(new EtcdProcess());
  e->options_ = options;
  char tmpl[] = "/tmp/trellis-etcd.XXXXXX";
  if (!mkdtemp(tmpl)) return Status::FromErrno("mkdtemp", errno);
  e->dir_ = tmpl;  // from here on, returning `e`'s error removes the dir
  e->data_dir_ = e->dir_ + "/data";
  e->log_path_ = e->dir_ + "/etcd.log";
  // Another process may take a port between our probe and etcd's bind:
  // then etcd exits at once and we try other ports.
  Status st;
  for (int attempt = 0; attempt < 3; ++attempt) {
    // Both probe sockets stay open together so the two ports differ.
    int fds[2];
    int ports[2];
    for (int i = 0; i < 2; ++i) {
      auto fd = BindAnyPort(options.host, &ports[i]);
      if (!fd.ok()) {
        if (i == 1) close(fds[0]);
        return fd.status();
      }
      fds[i] = *fd;
    }
    close(fds[0]);
    close(fds[1]);
    e->client_port_ = ports[0];
    e->peer_port_ = ports[1];
    e->endpoint_ =
        "http://" + options.host + ":" + std::to_string(e->client_port_);
    st = e->Launch();
    if (st.ok() || !st.IsIOError()) break;
    std::error_code ec;
    std::filesystem::remove_all(e->data_dir_, ec);
  }
  if (!st.ok()) return st;
  return e;
}

Status EtcdProcess::Launch() {
  using Clock = std::chrono::steady_clock;
  const std::string host = options_.host;
  const std::string client = endpoint_;
  const std::string peer = "http://" + host + ":" + std::to_string(peer_port_);
  std::vector<std::string> args = {"--name",
                                   "default",
                                   "--data-dir",
                                   data_dir_,
                                   "--listen-client-urls",
                                   client,
                                   "--advertise-client-urls",
                                   client,
                                   "--listen-peer-urls",
                                   peer,
                                   "--initial-advertise-peer-urls",
                                   peer,
                                   "--initial-cluster",
                                   "default=" + peer,
                                   "--initial-cluster-token",
                                   "trellis-test-" + std::to_string(getpid()),
                                   "--logger",
                                   "zap",
                                   "--log-outputs",
                                   "stderr",
                                   "--log-level",
                                   "warn"};
  int log =
      open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) return Status::FromErrno("open " + log_path_, errno);
  auto pid = Spawn(options_.etcd, args, log);
  close(log);
  if (!pid.ok()) return pid.status();
  pid_ = *pid;

  etcd::EtcdOptions copts;
  copts.endpoints = {endpoint_};
  copts.timeout = std::chrono::milliseconds(500);
  TRELLIS_ASSIGN_OR_RAISE(auto probe, etcd::EtcdClient::Make(copts));
  const auto deadline = Clock::now() + options_.start_timeout;
  for (;;) {
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return Status::IOError(options_.etcd + " exited during start-up (" +
                             endpoint_ + "); its log ends:\n" + LogTail());
    }
    if (probe->Get("health-probe").ok()) return Status::OK();
    if (Clock::now() >= deadline) {
      Stop();
      return Status::Timeout(options_.etcd + " did not serve " + endpoint_ +
                             " within " +
                             std::to_string(options_.start_timeout.count()) +
                             " ms; its log ends:\n" + LogTail());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

Status EtcdProcess::Kill() {
  if (pid_ < 0) return Status::Invalid("etcd is not running");
  kill(pid_, SIGKILL);
  WaitChild(pid_);
  pid_ = -1;
  return Status::OK();
}

Status EtcdProcess::Restart() {
  if (pid_ > 0) return Status::Invalid("etcd is already running");
  return Launch();
}

int EtcdProcess::Stop() { return TerminateChild(&pid_); }

std::string EtcdProcess::LogTail(size_t max_bytes) const {
  std::ifstream in(log_path_, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  return s.size() > max_bytes ? s.substr(s.size() - max_bytes) : s;
}

EtcdProcess::~EtcdProcess() {
  Stop();
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

}  // namespace trellis::testing
