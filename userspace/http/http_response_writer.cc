// HttpResponseWriter: serialising responses, writing them to the socket, streamed bodies.
#include "http/http_response_writer.h"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>

namespace sockdispatch {

namespace {

// Pulled pieces are added while the output holds less than this: enough to fill a socket
// buffer, little enough that a slow client holds back the producer.
constexpr size_t kStreamWindow = 64UL * 1024;

// Adds one piece: as a chunk (size line, bytes, CRLF) or as plain bytes.
void addPiece(evbuffer *output, const std::string &piece, bool chunked) {
  if (chunked) {
    char size[24];
    int length = std::snprintf(size, sizeof(size), "%zx\r\n", piece.size());
    evbuffer_add(output, size, static_cast<size_t>(length));
  }
  evbuffer_add(output, piece.data(), piece.size());
  if (chunked) {
    evbuffer_add(output, "\r\n", 2);
  }
}

} // namespace

HttpResponseWriter::HttpResponseWriter(event_base *base, int fd, const WorkerIdentity &who,
                                       const HttpLimits &limits, Events &events)
    : fd_(fd), who_(who), limits_(limits), events_(events), output_(evbuffer_new()) {
  // Lets file segments go out with sendfile(2) instead of being mmapped into the buffer.
  evbuffer_set_flags(output_.get(), EVBUFFER_FLAG_DRAINS_TO_FD);
  writeEvent_.reset(event_new(base, fd, EV_WRITE | EV_PERSIST, onWritable, this));
}

void HttpResponseWriter::onWritable(evutil_socket_t /*fd*/, short /*what*/, void *ctx) {
  static_cast<HttpResponseWriter *>(ctx)->flush();
}

void HttpResponseWriter::attach(int fd) {
  fd_ = fd;
  stopped_ = false;
  armed_ = false;
  event_assign(writeEvent_.get(), event_get_base(writeEvent_.get()), fd, EV_WRITE | EV_PERSIST,
               onWritable, this);
}

bool HttpResponseWriter::done() const {
  return !armed_ && stream_ == nullptr && evbuffer_get_length(output_.get()) == 0;
}

bool HttpResponseWriter::backlogged() const {
  return evbuffer_get_length(output_.get()) > limits_.maxPendingOutput;
}

void HttpResponseWriter::writeResponse(Response &response, int versionMinor, bool head,
                                       bool keepAlive) {
  evbuffer *output = output_.get();
  std::string text;
  text.reserve(256);
  text += "HTTP/1.1 ";
  text += std::to_string(response.status);
  text += ' ';
  text += reasonPhrase(response.status);
  text += "\r\nServer: sockdispatch\r\nDate: ";
  text += httpDateNow();
  text += "\r\n";
  if (who_.stamped) {
    text += "X-Sockdispatch-Worker: ";
    text += std::to_string(who_.slot);
    text += "\r\n";
  }
  for (const auto &[name, value] : response.headers) {
    text += name;
    text += ": ";
    text += value;
    text += "\r\n";
  }
  bool noBody = statusHasNoBody(response.status);
  bool streamed = response.stream != nullptr && !noBody;
  if (streamed) {
    if (versionMinor == 1) {
      text += "Transfer-Encoding: chunked\r\n";
    }
  } else if (!noBody) {
    text += "Content-Length: ";
    text += std::to_string(response.contentLength());
    text += "\r\n";
  }
  if (!keepAlive) {
    text += "Connection: close\r\n";
  } else if (versionMinor == 0) {
    text += "Connection: keep-alive\r\n";
  }
  text += "\r\n";
  evbuffer_add(output, text.data(), text.size());
  if (head || noBody) {
    return;
  }
  if (streamed) {
    stream_ = std::move(response.stream);
    streamChunked_ = versionMinor == 1;
  } else if (response.file.valid()) {
    // The evbuffer owns the fd from here; libevent sends it with sendfile().
    evbuffer_add_file(output, response.file.release(), response.fileOffset,
                      static_cast<ev_off_t>(response.fileLength));
  } else {
    evbuffer_add(output, response.body.data(), response.body.size());
  }
}

void HttpResponseWriter::writeContinue() {
  evbuffer_add_printf(output_.get(), "HTTP/1.1 100 Continue\r\n\r\n");
}

void HttpResponseWriter::flush() {
  if (stream_) {
    pullStream();
  }
  if (stopped_) {
    return;
  }
  size_t before = evbuffer_get_length(output_.get());
  while (evbuffer_get_length(output_.get()) > 0) {
    int n = evbuffer_write(output_.get(), fd_);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        break;
      }
      events_.writeFailed(); // the client went away
      return;
    }
  }
  size_t left = evbuffer_get_length(output_.get());
  if (left > 0 || stream_) {
    if (!armed_) {
      armed_ = true;
      deadline_ = Clock::now() + limits_.writeTimeout;
      event_add(writeEvent_.get(), nullptr);
      events_.writeBlocked();
    } else if (left < before) {
      // Progress: move the deadline on; the timer notices when it fires (no re-arm per write).
      deadline_ = Clock::now() + limits_.writeTimeout;
    }
    return;
  }
  bool wasBlocked = armed_;
  if (armed_) {
    armed_ = false;
    event_del(writeEvent_.get());
  }
  events_.writeDrained(wasBlocked);
}

void HttpResponseWriter::stop() {
  stopped_ = true;
  event_del(writeEvent_.get());
}

void HttpResponseWriter::pullStream() {
  evbuffer *output = output_.get();
  while (stream_ && evbuffer_get_length(output) < kStreamWindow) {
    std::optional<std::string> piece;
    try {
      piece = stream_();
    } catch (const std::exception &error) {
      spdlog::error("a streamed body failed: {}", error.what());
      stream_ = nullptr;
      events_.streamEnded(true); // the head is sent: only a cut-short body can say it failed
      return;
    } catch (...) {
      spdlog::error("a streamed body failed: unknown exception");
      stream_ = nullptr;
      events_.streamEnded(true);
      return;
    }
    if (!piece) {
      stream_ = nullptr;
      if (streamChunked_) {
        evbuffer_add(output, "0\r\n\r\n", 5);
      }
      events_.streamEnded(false);
      return;
    }
    if (!piece->empty()) { // an empty chunk would end the body
      addPiece(output, *piece, streamChunked_);
    }
  }
}

} // namespace sockdispatch
