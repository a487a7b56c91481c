// Test and benchmark support: a real etcd server as a child process, on free
// loopback ports with its own temporary data dir. Never a mock: the tests of
// the etcd client and of the cluster run against Debian's etcd (3.4).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>

#include "trellis/status.h"

namespace trellis::testing {

struct EtcdProcessOptions {
  std::string etcd = "/usr/bin/etcd";  // the binary (Debian's etcd-server)
  std::string host = "127.0.0.1";      // the address it listens on
  // How long etcd may take to serve a linearizable read after (re)start.
  std::chrono::milliseconds start_timeout = std::chrono::seconds(15);
};

// One single-member etcd cluster. Not thread-safe: one thread drives it.
class EtcdProcess {
 public:
  // Makes /tmp/trellis-etcd.XXXXXX (data in data/, etcd's stderr appended to
  // etcd.log), picks two free ports on options.host (client, peer), runs
  // etcd there and blocks until it serves a read. The child gets SIGTERM if
  // the calling thread exits. Errors (child reaped, dir removed): IOError if
  // etcd cannot run or exits during start-up (with the tail of its log);
  // Timeout after options.start_timeout.
  static Result<std::unique_ptr<EtcdProcess>> Start(
      const EtcdProcessOptions& options = {});
  ~EtcdProcess();  // Stop(), then remove the temp dir

  EtcdProcess(const EtcdProcess&) = delete;
  EtcdProcess& operator=(const EtcdProcess&) = delete;

  // "http://HOST:PORT", the client URL; the same across Kill/Restart.
  const std::string& endpoint() const { return endpoint_; }
  int client_port() const { return client_port_; }
  const std::string& data_dir() const { return data_dir_; }
  const std::string& dir() const { return dir_; }
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }

  // SIGKILLs etcd and reaps it (no clean shutdown: the crash case). It stays
  // down until Restart(). Invalid if it is not running.
  Status Kill();
  // Starts etcd again on the same ports and data dir (its keys, leases and
  // revisions survive) and blocks until it serves a read. Invalid if it is
  // running; errors as Start.
  Status Restart();
  // SIGTERM and wait; returns the exit code (128+signal if killed), -1 if
  // not running.
  int Stop();

  // The last `max_bytes` of etcd.log, for error messages.
  std::string LogTail(size_t max_bytes = 2000) const;

 private:
  EtcdProcess() = default;
  Status Launch();  // runs etcd with the current ports, waits until healthy

  EtcdProcessOptions options_;
  std::string dir_;
  std::string data_dir_;
  std::string log_path_;
  std::string endpoint_;
  int client_port_ = 0;
  int peer_port_ = 0;
  pid_t pid_ = -1;
};

// A TCP port on `host` that nothing listens on right now (the kernel picks
// it; another process may take it before the caller binds it).
Result<int> FreeTcpPort(const std::string& host = "127.0.0.1");

}  // namespace trellis::testing
