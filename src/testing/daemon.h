// Test support: a real trellisd child process on a private socket.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "trellis/status.h"

namespace trellis::testing {

class DaemonProcess {
 public:
  // Starts TRELLISD_PATH with --socket <tmp>/trellis.sock plus `args` and
  // waits until it accepts connections.
  static Result<std::unique_ptr<DaemonProcess>> Start(
      const std::vector<std::string>& args = {"--size", "64M"});
  ~DaemonProcess();  // SIGTERM, wait, remove the temp dir

  const std::string& socket() const { return socket_; }
  const std::string& dir() const { return dir_; }
  pid_t pid() const { return pid_; }
  // Sends SIGTERM and returns the exit status (as from waitpid).
  int Stop();

 private:
  DaemonProcess() = default;
  std::string dir_;
  std::string socket_;
  pid_t pid_ = -1;
};

// Runs trellisd with `args` to completion; returns its exit code and stderr.
struct RunResult {
  int exit_code;
  std::string stderr_text;
};
RunResult RunDaemonToExit(const std::vector<std::string>& args,
                          int timeout_seconds = 10);

// Waits for a child and returns its exit code (or 128+signal).
int WaitChild(pid_t pid);

}  // namespace trellis::testing
