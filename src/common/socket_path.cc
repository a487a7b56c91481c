#include "common/socket_path.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

namespace trellis {

std::string DefaultSocketPath() {
  const char* env = std::getenv("TRELLIS_SOCKET");
  if (env && *env) return env;
  return "/tmp/trellis-" + std::to_string(getuid()) + "/trellis.sock";
}

Status EnsureSocketDir(const std::string& socket_path) {
  auto slash = socket_path.rfind('/');
  if (slash == std::string::npos || slash == 0) return Status::OK();
  std::string dir = socket_path.substr(0, slash);
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::FromErrno("cannot create socket directory " + dir, errno);
  }
  return Status::OK();
}

}  // namespace trellis
