#include "server/rpc_server.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>

namespace trellis::server {

using tcp = asio::ip::tcp;
using nlohmann::json;

Result<std::pair<std::string, uint16_t>> ParseRpcEndpoint(
    const std::string& text) {
  auto invalid = [&text] {
    return Status::Invalid("--rpc '" + text +
                           "' is not PORT, HOST:PORT or [IPV6]:PORT");
  };
  std::string host = "127.0.0.1";
  std::string port = text;
  size_t colon = text.rfind(':');
  if (colon != std::string::npos) {
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    } else if (host.find(':') != std::string::npos) {
      return invalid();  // an IPv6 address without brackets
    }
    if (host.empty()) return invalid();
  }
  unsigned value = 0;
  auto [end, ec] =
      std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() ||
      value > 65535) {
    return invalid();
  }
  return std::make_pair(host, static_cast<uint16_t>(value));
}

Result<std::string> ReadRpcToken(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return Status::FromErrno("cannot read --rpc-token " + path, errno);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    return Status::FromErrno("cannot stat --rpc-token " + path, err);
  }
  if ((st.st_mode & 0007) != 0) {
    close(fd);
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", st.st_mode & 07777);
    return Status::Invalid("--rpc-token " + path +
                           " is accessible to other users (mode " + mode +
                           "); a secret must not be: chmod 600 " + path);
  }
  std::string token;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      close(fd);
      return Status::FromErrno("cannot read --rpc-token " + path, err);
    }
    token.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  if (!token.empty() && token.back() == '\n') token.pop_back();
  if (!token.empty() && token.back() == '\r') token.pop_back();
  if (token.empty()) {
    return Status::Invalid("--rpc-token " + path + " is empty");
  }
  return token;
}

bool TokensEqual(const std::string& presented, const std::string& expected) {
  // Every byte of the expected token is looked at whatever the input, so
  // the time taken says nothing about how much of a guess was right.
  unsigned char diff = presented.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i) {
    unsigned char p = i < presented.size() ? presented[i] : 0;
    diff |= static_cast<unsigned char>(p ^ expected[i]);
  }
  return diff == 0;
}

std::string EndpointString(const tcp::endpoint& endpoint) {
  std::string address = endpoint.address().to_string();
  if (endpoint.address().is_v6()) address = "[" + address + "]";
  return address + ":" + std::to_string(endpoint.port());
}

RpcServer::RpcServer(asio::io_context& io, RpcOptions options)
    : SessionServer(nullptr, options.max_frame),
      io_(io),
      options_(std::move(options)),
      acceptor_(io) {}

RpcServer::~RpcServer() { Stop(); }

Status RpcServer::Listen() {
  const std::string where = options_.host + ":" + std::to_string(options_.port);
  asio::error_code ec;
  asio::ip::address address = asio::ip::make_address(options_.host, ec);
  if (ec) {  // a name: resolved once, at start
    tcp::resolver resolver(io_);
    auto results = resolver.resolve(options_.host, "0", ec);
    if (ec || results.empty()) {
      return Status::IOError("cannot resolve --rpc host '" + options_.host +
                             "': " + (ec ? ec.message() : "no address"));
    }
    address = results.begin()->endpoint().address();
  }
  if (!address.is_loopback() && options_.token.empty()) {
    return Status::Invalid("--rpc " + where + " is not a loopback address: " +
                           "serving it needs --rpc-token FILE (a shared " +
                           "secret every client must present)");
  }
  tcp::endpoint endpoint(address, options_.port);
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  // Accepted sockets inherit these (the receive buffer must be set before
  // listen: it decides the window scale offered).
  if (!ec) {
    acceptor_.set_option(
        asio::socket_base::receive_buffer_size(kRpcSocketBuffer), ec);
  }
  if (!ec) {
    acceptor_.set_option(asio::socket_base::send_buffer_size(kRpcSocketBuffer),
                         ec);
  }
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (!ec) endpoint_ = acceptor_.local_endpoint(ec);
  if (ec) {
    asio::error_code ignored;
    acceptor_.close(ignored);
    return Status::IOError("cannot listen on " + where + ": " + ec.message());
  }
  started_ = true;
  return Status::OK();
}

void RpcServer::Serve(Store* store) {
  set_store(store);
  AcceptLoop(acceptor_, [this](tcp::socket socket) {
    asio::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    auto peer = socket.remote_endpoint(ignored);
    StartSession(Socket(std::move(socket)), EndpointString(peer));
  });
}

void RpcServer::Stop() {
  if (!started_) return;
  started_ = false;
  StopServing(acceptor_);
}

Status RpcServer::CheckHello(const json& hello) const {
  if (options_.token.empty()) return Status::OK();
  auto token = hello.find("token");
  if (token == hello.end() || !token->is_string()) {
    return Status::Invalid("RPC token rejected: the Hello carries no token");
  }
  if (!TokensEqual(token->get_ref<const std::string&>(), options_.token)) {
    return Status::Invalid("RPC token rejected: invalid RPC token");
  }
  return Status::OK();
}

json RpcServer::HelloReply(ClientId client) const {
  json reply = store()->HelloReply(client);
  reply["transport"] = "tcp";
  return reply;
}

Status WritePortFile(const std::string& path, uint16_t port,
                     const std::string& flag) {
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) return Status::FromErrno("cannot write " + flag + " " + tmp, errno);
  bool written = std::fprintf(f, "%u\n", unsigned{port}) > 0;
  written = std::fclose(f) == 0 && written;
  if (!written || std::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    std::remove(tmp.c_str());
    return Status::FromErrno("cannot write " + flag + " " + path, err);
  }
  return Status::OK();
}

Result<std::unique_ptr<RpcServer>> ListenRpcServer(asio::io_context& io,
                                                   const RpcFlags& flags,
                                                   uint32_t max_frame) {
  if (flags.endpoint.empty()) return std::unique_ptr<RpcServer>();
  RpcOptions options;
  TRELLIS_ASSIGN_OR_RAISE(auto endpoint, ParseRpcEndpoint(flags.endpoint));
  options.host = endpoint.first;
  options.port = endpoint.second;
  if (!flags.token_file.empty()) {
    TRELLIS_ASSIGN_OR_RAISE(options.token, ReadRpcToken(flags.token_file));
  }
  options.max_frame = max_frame;
  auto server = std::make_unique<RpcServer>(io, std::move(options));
  TRELLIS_RETURN_NOT_OK(server->Listen());
  if (!flags.port_file.empty()) {
    TRELLIS_RETURN_NOT_OK(
        WritePortFile(flags.port_file, server->endpoint().port()));
  }
  return server;
}

std::string AdvertisedEndpoint(const RpcServer& server,
                               const std::string& hostname) {
  const tcp::endpoint& bound = server.endpoint();
  if (!bound.address().is_unspecified()) return EndpointString(bound);
  return hostname + ":" + std::to_string(bound.port());
}

}  // namespace trellis::server
