// What the benchmarks share: fatal errors, their common flags, and running
// the trellisd under test.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "testing/daemon.h"
#include "trellis/status.h"

namespace CLI {
class App;
}

namespace trellis::bench {

// Prints "<program>: <what>" (program: the basename of argv[0]) on stderr
// and exits with status 1. Exits with std::exit, so static objects are
// destroyed: a DaemonProcess held in one stops its daemon and removes its
// socket dir.
[[noreturn]] void Die(const std::string& what);

// The value of `r`, or Die("<what>: <status>").
template <typename T>
T Must(Result<T> r, const char* what) {
  if (!r.ok()) Die(std::string(what) + ": " + r.status().ToString());
  return std::move(r).value();
}
void Must(const Status& s, const char* what);

// Adds --trellisd=PATH, the daemon binary to run, to `app`; *path is set to
// the trellisd built with this tree as the default.
void AddTrellisdFlag(CLI::App& app, std::string* path);

// Adds option `name` (e.g. "--blob") taking a byte count written as trellisd
// takes --size: a whole number with an optional binary suffix (K, M, G, T),
// e.g. 1048576, 64M, 1G. The parsed value goes to *value, whose value before
// parsing is the default; a text that does not parse is a usage error.
void AddSizeFlag(CLI::App& app, const std::string& name, uint64_t* value,
                 const std::string& help);

// Runs `trellisd` on a private socket (DaemonProcess::Start) with `args`,
// allowing 120 s for start-up (--reserve of a few GiB), or Dies saying why.
std::unique_ptr<testing::DaemonProcess> StartDaemon(
    const std::string& trellisd, const std::vector<std::string>& args);

}  // namespace trellis::bench
