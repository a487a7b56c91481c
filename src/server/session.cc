#include "server/session.h"

#include <spdlog/spdlog.h>
#include <sys/sendfile.h>

#include <algorithm>
#include <array>
#include <optional>
#include <utility>

#include "common/protocol.h"

namespace trellis::server {

using protocol::json;
using protocol::MessageType;

// One connection: the behaviour described in session.h.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(SessionServer* server, SessionServer::Socket socket, std::string peer)
      : server_(server),
        store_(server->store_),
        socket_(std::move(socket)),
        peer_(std::move(peer)),
        decoder_(server->max_frame_) {}

  void Start() {
    asio::error_code ignored;
    socket_.non_blocking(true, ignored);  // WriteOut's write_some
    Read();
  }

  // Closes the socket now; pending replies are dropped. The client's
  // unsealed blobs (one being written by WriteBlob, say) are aborted and its
  // holds (those of a ReadBlobs being written, too) dropped.
  void Close() {
    if (closed_) return;
    closed_ = true;
    asio::error_code ignored;
    socket_.close(ignored);
    if (client_ != 0) store_->Disconnect(client_);
    client_ = 0;
    stream_.reset();
    payload_left_ = 0;
    server_->OnSessionClosed(shared_from_this());
  }

 private:
  // The blobs of a ReadBlobs being written, and how far.
  struct BlobStream {
    std::vector<ObjectID> ids;
    std::vector<const uint8_t*> data;
    std::vector<uint64_t> sizes;
    size_t index = 0;   // the blob being written
    uint64_t sent = 0;  // its bytes handed to the socket
  };

  // "client N", and where from for TCP: for the log.
  std::string Who() const {
    std::string who = "client " + std::to_string(client_);
    return peer_.empty() ? who : who + " from " + peer_;
  }

  // Reads on unless a read is under way, the connection is closing, or it
  // is paused (a waiting request with kReadPauseBytes buffered behind it).
  // Requests are read by hand (TakeInput) once the socket is readable, not
  // with async_read_some, which may read them ahead into a completion that
  // has not run yet: Store::Connect's take_input (TakeInputNow) must find
  // every byte the client sent either handled or still in the socket.
  // The rest of a WriteBlob payload is read straight into the arena.
  void Read() {
    if (closed_ || closing_ || reading_) return;
    auto self = shared_from_this();
    if (payload_left_ > 0) {
      reading_ = true;
      asio::async_read(socket_, asio::buffer(payload_dst_, payload_left_),
                       [this, self](const asio::error_code& ec, size_t n) {
                         reading_ = false;
                         if (closed_) return;
                         if (ec) return ReadFailed(ec);
                         server_->bytes_received_ += n;
                         payload_dst_ += n;
                         payload_left_ -= n;
                         ProcessFrames();
                         Read();
                       });
      return;
    }
    if (Paused()) return;  // Resume reads on
    Input got = TakeInput(/*until_empty=*/false);
    if (got.bytes > 0) ProcessFrames();
    if (got.error) return ReadFailed(got.error);
    if (closed_ || closing_ || reading_) return;
    reading_ = true;
    if (got.bytes > 0) {
      // More may have come: look again after the other connections' turn
      // (the socket must be read until it would block before the wait, as
      // the reactor reports a readable socket once per arrival).
      asio::post(socket_.get_executor(), [this, self] {
        reading_ = false;
        Read();
      });
      return;
    }
    socket_.async_wait(SessionServer::Socket::wait_read,
                       [this, self](const asio::error_code& ec) {
                         reading_ = false;
                         if (closed_) return;
                         if (ec) return ReadFailed(ec);
                         Read();
                       });
  }

  bool Paused() const {
    return waiting_ && decoder_.buffered() >= SessionServer::kReadPauseBytes;
  }

  struct Input {
    size_t bytes = 0;        // read into the decoder
    asio::error_code error;  // eof included; bytes before it are read
  };
  // Reads what the socket holds into the decoder without blocking: until it
  // would block, or (unless `until_empty`) after a read that did not fill
  // the buffer, or once paused.
  Input TakeInput(bool until_empty) {
    Input got;
    while (true) {
      size_t n = socket_.read_some(asio::buffer(read_buffer_), got.error);
      if (got.error == asio::error::would_block ||
          got.error == asio::error::try_again) {
        got.error = {};
        return got;
      }
      if (got.error) return got;
      server_->bytes_received_ += n;
      decoder_.Feed(read_buffer_.data(), n);
      got.bytes += n;
      if ((!until_empty && n < read_buffer_.size()) || Paused()) return got;
    }
  }

 public:
  // Store::Connect's take_input: if the connection is idle (waiting for
  // input, nothing in progress), handles now what the client has sent.
  // A close it finds (end of file, an error) is left to the wait under
  // way, which finds it too, so the store's state does not change under
  // the request that called this beyond the requests handled.
  void TakeInputNow() {
    if (closed_ || closing_ || !reading_ || waiting_ || payload_left_ > 0) {
      return;
    }
    if (TakeInput(/*until_empty=*/true).bytes > 0) ProcessFrames();
  }

 private:
  void ReadFailed(const asio::error_code& ec) {
    if (ec != asio::error::eof && ec != asio::error::operation_aborted) {
      spdlog::debug("{}: read failed: {}", Who(), ec.message());
    }
    Close();
  }

  // Handles queued frames until one must wait or the buffer is drained.
  void ProcessFrames() {
    while (!closed_ && !closing_ && !waiting_) {
      if (payload_left_ > 0) {  // a WriteBlob payload: what is buffered
        size_t n = decoder_.Take(payload_dst_, payload_left_);
        payload_dst_ += n;
        payload_left_ -= n;
        if (payload_left_ > 0) break;  // Read takes the rest
        continue;
      }
      if (decoder_.NextIsBulk()) {
        auto bulk = decoder_.NextBulk();
        if (!bulk.ok()) {
          Fail(bulk.status());
          break;
        }
        if (!bulk->has_value()) break;
        HandleBulk(**bulk);
        continue;
      }
      auto frame = decoder_.Next();
      if (!frame.ok()) {
        Fail(frame.status());
        break;
      }
      if (!frame->has_value()) break;
      HandleFrame(std::move(**frame));
    }
    Flush();
  }

  void HandleFrame(protocol::Frame frame) {
    if (client_ == 0) {
      HandleHello(frame);
      return;
    }
    if (!protocol::IsRequestType(frame.type) ||
        frame.type == static_cast<uint16_t>(MessageType::kHello)) {
      Fail(Status::Invalid("unexpected message type " +
                           protocol::MessageTypeName(frame.type)));
      return;
    }
    HandleRequest(frame.type, std::move(frame.body));
  }

  void HandleRequest(uint16_t type, json body) {
    // ReadBlobs is GetBlobs (holds, reloads) whose reply is turned into the
    // Reply {sizes} and the blobs' bytes.
    bool read_blobs = type == static_cast<uint16_t>(MessageType::kReadBlobs);
    std::vector<ObjectID> ids;
    if (read_blobs) {
      auto parsed = protocol::GetIds(body, "ids");
      if (parsed.ok()) ids = std::move(*parsed);  // else GetBlobs says why
      type = static_cast<uint16_t>(MessageType::kGetBlobs);
    }
    // The reply may come inside Handle (most requests) or later (a GetName
    // that waits); in the latter case, processing resumes when it comes.
    struct CallState {
      bool in_handle = true;
      bool replied = false;
    };
    auto call = std::make_shared<CallState>();
    std::weak_ptr<Session> weak = shared_from_this();
    waiting_ = true;
    store_->Handle(
        client_, type, std::move(body),
        [this, weak, call, read_blobs,
         ids = std::move(ids)](Result<json> reply) mutable {
          auto self = weak.lock();
          if (!self || closed_) return;
          call->replied = true;
          if (read_blobs && reply.ok()) {
            StartBlobStream(std::move(ids), *reply);
            if (stream_) {  // FinishBlobStream resumes
              if (!call->in_handle) Flush();
              return;
            }
          } else if (reply.ok()) {
            protocol::AppendFrame(MessageType::kReply, *reply, &pending_);
          } else {
            protocol::AppendFrame(MessageType::kError,
                                  protocol::ErrorBody(reply.status()),
                                  &pending_);
          }
          if (!call->in_handle) Resume();
        });
    call->in_handle = false;
    if ((call->replied && !stream_) ||
        type == static_cast<uint16_t>(MessageType::kRelease)) {
      waiting_ = false;
    }
  }

  // A waiting request was answered: frames are handled again.
  void Resume() {
    waiting_ = false;
    ProcessFrames();
    Read();
  }

  // Queues the Reply {sizes} of a ReadBlobs whose GetBlobs reply (the blobs
  // held, `ids` in order) is `blobs`; Flush then writes the bytes.
  void StartBlobStream(std::vector<ObjectID> ids, const json& blobs) {
    auto dom = protocol::BodyDom(blobs);
    auto offsets = dom.ok() ? protocol::GetUints(*dom, "offsets")
                            : Result<std::vector<uint64_t>>(dom.status());
    auto sizes = dom.ok() ? protocol::GetUints(*dom, "sizes")
                          : Result<std::vector<uint64_t>>(dom.status());
    if (!offsets.ok() || !sizes.ok() || offsets->size() != ids.size() ||
        sizes->size() != ids.size()) {
      // Not expected: GetBlobs answers with one offset and size per id.
      store_->Handle(client_, static_cast<uint16_t>(MessageType::kRelease),
                     json{{"ids", protocol::IdsToJson(ids)}}, nullptr);
      protocol::AppendFrame(
          MessageType::kError,
          protocol::ErrorBody(Status::IOError("ReadBlobs: bad GetBlobs reply")),
          &pending_);
      return;
    }
    BlobStream stream;
    const uint8_t* base = store_->arena().base();
    for (uint64_t offset : *offsets) stream.data.push_back(base + offset);
    stream.ids = std::move(ids);
    stream.sizes = std::move(*sizes);
    protocol::AppendFrame(MessageType::kReply, json{{"sizes", stream.sizes}},
                          &pending_);
    stream_ = std::move(stream);
  }

  // The last byte of a ReadBlobs is written: its holds are released and the
  // connection's next frame is handled.
  void FinishBlobStream() {
    std::vector<ObjectID> ids = std::move(stream_->ids);
    stream_.reset();
    store_->Handle(client_, static_cast<uint16_t>(MessageType::kRelease),
                   json{{"ids", protocol::IdsToJson(ids)}}, nullptr);
    Resume();
  }

  // True if the stream has bytes left to write; moves past blobs done.
  bool StreamHasBytes() {
    BlobStream& s = *stream_;
    while (s.index < s.ids.size() && s.sent == s.sizes[s.index]) {
      ++s.index;
      s.sent = 0;
    }
    return s.index < s.ids.size();
  }

  void HandleHello(const protocol::Frame& frame) {
    if (frame.type != static_cast<uint16_t>(MessageType::kHello)) {
      Fail(Status::Invalid("the first message must be Hello, got " +
                           protocol::MessageTypeName(frame.type)));
      return;
    }
    auto version = protocol::GetUint(frame.body, "version");
    if (!version.ok()) {
      Fail(version.status());
      return;
    }
    if (*version != protocol::kProtocolVersion) {
      Fail(Status::Invalid("protocol version " + std::to_string(*version) +
                           " is not supported (daemon speaks " +
                           std::to_string(protocol::kProtocolVersion) + ")"));
      return;
    }
    Status accepted = server_->CheckHello(frame.body);
    if (!accepted.ok()) {
      Fail(accepted);
      return;
    }
    std::weak_ptr<Session> weak = shared_from_this();
    client_ = store_->Connect(/*counted=*/true, [weak] {
      if (auto self = weak.lock()) self->TakeInputNow();
    });
    std::vector<uint8_t> reply = protocol::EncodeFrame(
        MessageType::kReply, server_->HelloReply(client_));
    // Nothing is queued before the reply, so the transport may write it.
    auto sent = server_->SendHelloReply(socket_.native_handle(), reply);
    if (!sent.ok()) {
      spdlog::debug("{}: hello reply failed: {}", Who(),
                    sent.status().message());
      Close();
      return;
    }
    pending_.insert(pending_.end(), reply.begin() + *sent, reply.end());
    spdlog::debug("{} connected", Who());
  }

  // A WriteBlob chunk: its payload goes into the blob's bytes in the arena.
  void HandleBulk(const protocol::BulkHeader& bulk) {
    if (client_ == 0) {
      Fail(
          Status::Invalid("the first message must be Hello, got a bulk frame"));
      return;
    }
    if (bulk.type != static_cast<uint16_t>(MessageType::kBlobData)) {
      Fail(Status::Invalid("a bulk frame must be BlobData, got " +
                           protocol::MessageTypeName(bulk.type)));
      return;
    }
    auto dst =
        store_->WritableRange(client_, bulk.blob, bulk.offset, bulk.size);
    if (!dst.ok()) {
      Fail(Status(dst.status().code(), "WriteBlob: " + dst.status().message()));
      return;
    }
    payload_dst_ = *dst;
    payload_left_ = bulk.size;
  }

  // Replies with an error, then closes once it is written.
  void Fail(const Status& status) {
    spdlog::warn("{}: closing connection: {}", Who(), status.ToString());
    protocol::AppendFrame(MessageType::kError, protocol::ErrorBody(status),
                          &pending_);
    closing_ = true;
    Flush();
  }

  // Writes queued replies, then the next chunk of a ReadBlobs; when all is
  // written, closes (closing_) or finishes the ReadBlobs.
  void Flush() {
    if (closed_ || writing_) return;
    if (PrepareWrite()) {
      writing_ = true;
      WriteOut();
    } else if (closing_) {
      Close();
    } else if (stream_) {
      // Posted, not called: a client pipelining many ReadBlobs must not
      // recurse through FinishBlobStream, ProcessFrames and Flush.
      auto self = shared_from_this();
      asio::post(socket_.get_executor(), [this, self] {
        if (!closed_ && stream_ && !writing_ && !StreamHasBytes()) {
          FinishBlobStream();
        }
      });
    }
  }

  // Fills out_ with the queued replies and the next chunk of a ReadBlobs,
  // gathered into one write (the chunk's bytes straight from the arena).
  // False if there is nothing to write.
  bool PrepareWrite() {
    bool chunk = stream_ && !closing_ && StreamHasBytes();
    if (pending_.empty() && !chunk) return false;
    in_flight_.swap(pending_);
    pending_.clear();
    out_ = {asio::buffer(in_flight_), asio::const_buffer(),
            asio::const_buffer()};
    if (chunk) {
      BlobStream& s = *stream_;
      uint64_t n = std::min(protocol::kMaxBulkChunk, s.sizes[s.index] - s.sent);
      bulk_header_ = protocol::EncodeBulkHeader(MessageType::kBlobData,
                                                s.ids[s.index], s.sent, n);
      out_[1] = asio::buffer(bulk_header_);
      out_[2] = asio::buffer(s.data[s.index] + s.sent, n);
      s.sent += n;
    }
    return true;
  }

  // Writes out_, and what PrepareWrite finds next, until nothing is left or
  // the socket is full; then waits for it to drain. By hand rather than with
  // asio::async_write, which completes every partial write through the
  // scheduler and tries again before waiting: measured on loopback, 1 GiB
  // ReadBlobs went from 1.1-1.5 to 1.9-2.3 GB/s (iperf3: 2.4).
  void WriteOut() {
    while (true) {
      if (asio::buffer_size(out_) == 0) {
        in_flight_.clear();
        if (PrepareWrite()) continue;
        writing_ = false;
        Flush();  // nothing to write: closes or finishes a ReadBlobs
        return;
      }
      asio::error_code ec;
      size_t n = WriteSome(ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        auto self = shared_from_this();
        socket_.async_wait(SessionServer::Socket::wait_write,
                           [this, self](const asio::error_code& ec) {
                             if (closed_) return;
                             if (ec) return Close();
                             WriteOut();
                           });
        return;
      }
      if (ec) return Close();
      server_->bytes_sent_ += n;
      for (auto& b : out_) {
        size_t used = std::min(n, b.size());
        b += used;
        n -= used;
      }
    }
  }

  // One non-blocking write of out_: the replies and bulk header with
  // writev, blob bytes (the last buffer, in the arena) with sendfile from
  // the arena's memfd, so the kernel sends the arena's pages instead of a
  // copy of them (bench/cluster_bench.py, between two network namespaces:
  // fetches of 256 MiB..4 GiB went from 71-88% of iperf3's throughput to
  // 110-115%). The bytes may stay referenced by
  // the socket until sent; that is safe because a blob cannot change or be
  // reused while the reader holds it, and a reader that hangs up takes its
  // queued bytes with it.
  size_t WriteSome(asio::error_code& ec) {
    if (!sendfile_ || out_[2].size() == 0) return socket_.write_some(out_, ec);
    std::array<asio::const_buffer, 2> head = {out_[0], out_[1]};
    if (asio::buffer_size(head) > 0) return socket_.write_some(head, ec);
    const Arena& arena = store_->arena();
    auto* data = static_cast<const uint8_t*>(out_[2].data());
    off_t offset = data - arena.base();
    ssize_t n = ::sendfile(socket_.native_handle(), arena.fd(), &offset,
                           out_[2].size());
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) {
      sendfile_ = false;  // this kernel cannot: write copies from now on
      return socket_.write_some(out_, ec);
    }
    ec = asio::error_code(errno, asio::error::get_system_category());
    return 0;
  }

  SessionServer* server_;
  Store* store_;
  SessionServer::Socket socket_;
  std::string peer_;  // empty for UNIX sockets
  protocol::FrameDecoder decoder_;
  std::array<uint8_t, 64 * 1024> read_buffer_;
  std::vector<uint8_t> pending_;    // replies not yet handed to the socket
  std::vector<uint8_t> in_flight_;  // the replies of the write under way
  // The rest of a WriteBlob payload: the next byte goes to payload_dst_.
  uint8_t* payload_dst_ = nullptr;
  uint64_t payload_left_ = 0;
  std::optional<BlobStream> stream_;  // a ReadBlobs being written
  std::array<uint8_t, protocol::kBulkHeaderSize> bulk_header_;
  // What the write under way has left: replies, bulk header, blob bytes.
  std::array<asio::const_buffer, 3> out_;
  ClientId client_ = 0;   // 0 until Hello
  bool waiting_ = false;  // a request's reply (or ReadBlobs' bytes) is due
  bool reading_ = false;  // a read is under way
  bool writing_ = false;
  bool sendfile_ = true;  // WriteSome sends blob bytes with sendfile(2)
  bool closing_ = false;  // close once pending_ is written
  bool closed_ = false;
};

SessionServer::SessionServer(Store* store, uint32_t max_frame)
    : store_(store), max_frame_(max_frame) {}

SessionServer::~SessionServer() { CloseSessions(); }

void SessionServer::StartSession(Socket socket, std::string peer) {
  auto session =
      std::make_shared<Session>(this, std::move(socket), std::move(peer));
  sessions_.insert(session);
  session->Start();
}

void SessionServer::CloseSessions() {
  auto sessions = sessions_;
  for (const auto& s : sessions) s->Close();
}

json SessionServer::HelloReply(ClientId client) const {
  return store_->HelloReply(client);
}

Result<size_t> SessionServer::SendHelloReply(int, const std::vector<uint8_t>&) {
  return size_t{0};
}

void SessionServer::OnSessionClosed(const std::shared_ptr<Session>& session) {
  sessions_.erase(session);
}

}  // namespace trellis::server
