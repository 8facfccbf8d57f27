// HttpConnection: streamed response bodies, pulled as the socket takes them.
#include "http_connection.h"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <exception>

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

void HttpConnection::startStream(BodyStream stream, bool chunked) {
  stream_ = std::move(stream);
  streamChunked_ = chunked;
  stopReading(); // the requests behind it wait, and the socket pushes back on the client
}

void HttpConnection::pullStream() {
  evbuffer *output = output_.get();
  while (stream_ && evbuffer_get_length(output) < kStreamWindow) {
    std::optional<std::string> piece;
    try {
      piece = stream_();
    } catch (const std::exception &error) {
      spdlog::error("a streamed body failed: {}", error.what());
      stream_ = nullptr;
      closeAfterWrite_ = true; // the head is sent: only a cut-short body can say it failed
      return;
    } catch (...) {
      spdlog::error("a streamed body failed: unknown exception");
      stream_ = nullptr;
      closeAfterWrite_ = true;
      return;
    }
    if (!piece) {
      stream_ = nullptr;
      if (streamChunked_) {
        evbuffer_add(output, "0\r\n\r\n", 5);
      }
      if (!closeAfterWrite_ && !closed_) {
        // Take up what the client pipelined meanwhile, on the next loop turn.
        startReading();
        event_active(readEvent_.get(), EV_READ, 0);
      }
      return;
    }
    if (!piece->empty()) { // an empty chunk would end the body
      addPiece(output, *piece, streamChunked_);
    }
  }
}

} // namespace sockdispatch
