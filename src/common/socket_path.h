#pragma once

#include <string>

#include "trellis/status.h"

namespace trellis {

// The socket path used when none is given: $TRELLIS_SOCKET if set and
// non-empty, else /tmp/trellis-$UID/trellis.sock.
std::string DefaultSocketPath();

// Creates the parent directory of `socket_path` (mode 0700) if missing.
Status EnsureSocketDir(const std::string& socket_path);

}  // namespace trellis
