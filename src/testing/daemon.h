// Test and benchmark support: a real trellisd child process on a private
// socket.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "trellis/status.h"

namespace trellis::testing {

// The trellisd built with this tree (TRELLISD_PATH at compile time).
std::string BuiltTrellisd();

// How DaemonProcess::Start runs trellisd.
struct DaemonOptions {
  std::string trellisd = BuiltTrellisd();  // the binary to execute
  // Passed after `--socket <dir>/trellis.sock --log-level warn`; must not
  // repeat those two flags (trellisd refuses a flag given twice).
  std::vector<std::string> args = {"--size", "64M"};
  // How long the daemon may take to accept connections (it listens only
  // once its arena is set up: a --reserve of GiBs takes seconds).
  std::chrono::milliseconds start_timeout = std::chrono::seconds(5);
  // If not empty, also serve RPC: `--rpc <rpc> --rpc-port-file <dir>/rpc.port`
  // are passed, and rpc_port() is the port the daemon chose.
  std::string rpc;
  // Send the daemon's stderr to <dir>/stderr.log (Log() reads it) instead
  // of ours.
  bool capture_stderr = false;
};

class DaemonProcess {
 public:
  // Makes a temp dir /tmp/trellis-test.XXXXXX, runs options.trellisd there
  // with --socket <dir>/trellis.sock --log-level warn plus options.args (its
  // stderr is ours) and blocks until the socket accepts connections. The
  // daemon gets SIGTERM if the calling thread exits (PR_SET_PDEATHSIG), so a
  // crashed caller leaves none behind. Errors, with the child reaped and the
  // dir removed: IOError "cannot run PATH: <errno text>" if it cannot be
  // executed; IOError naming PATH and the exit status if it exits first (it
  // prints its own reason on stderr); Timeout after options.start_timeout.
  static Result<std::unique_ptr<DaemonProcess>> Start(
      const DaemonOptions& options);
  // The same with the default options but `args`.
  static Result<std::unique_ptr<DaemonProcess>> Start(
      const std::vector<std::string>& args = {"--size", "64M"});
  ~DaemonProcess();  // Stop(), then remove the temp dir

  const std::string& socket() const { return socket_; }
  const std::string& dir() const { return dir_; }
  pid_t pid() const { return pid_; }
  // The RPC port (DaemonOptions::rpc), 0 if there is no RPC server.
  uint16_t rpc_port() const { return rpc_port_; }
  // What the daemon has written to stderr so far (with capture_stderr).
  std::string Log() const;
  // Sends SIGTERM and blocks until the daemon exits; returns its exit code
  // (128+signal if killed), -1 if already stopped.
  int Stop();

 private:
  DaemonProcess() = default;
  std::string dir_;
  std::string socket_;
  pid_t pid_ = -1;
  uint16_t rpc_port_ = 0;
};

// Runs trellisd with `args` to completion; returns its exit code and stderr.
// It is killed after `timeout_seconds` (exit_code -1); 127 and the reason in
// stderr_text if it cannot be executed.
struct RunResult {
  int exit_code;
  std::string stderr_text;
};
RunResult RunDaemonToExit(const std::vector<std::string>& args,
                          int timeout_seconds = 10);

// Forks and executes `path` with `args` (stderr to `stderr_fd` if >= 0),
// the child getting SIGTERM when the calling thread exits. Returns the pid
// once the exec succeeded, or IOError "cannot run PATH: ..." (child reaped).
Result<pid_t> Spawn(const std::string& path,
                    const std::vector<std::string>& args, int stderr_fd);

// Waits for a child and returns its exit code (or 128+signal).
int WaitChild(pid_t pid);
// SIGTERMs the child *pid and waits for it; sets *pid to -1. Returns its
// exit code as WaitChild does, or -1 if *pid was already -1.
int TerminateChild(pid_t* pid);

}  // namespace trellis::testing
