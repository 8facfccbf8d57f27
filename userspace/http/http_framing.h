#pragma once

#include "http/http_message.h"

#include <cstddef>
#include <string_view>

namespace sockdispatch {

// Line framing of a request's head (request line and header fields) as RFC 9112 2.2 and 5.2
// require it and llhttp 8.1's strict mode does not fully check it: every line ends in CRLF
// (a bare LF or a bare CR is a smuggling vector: front ends disagree on where a line ends),
// no line starts with whitespace (obs-fold, a line folded into the previous field), and the
// request line's three parts are separated by single spaces (RFC 9112 3: a recipient that
// does not accept other whitespace there answers 400; llhttp 8.1 takes "GET  /" and a tab
// before the version, and calls "GET<TAB>/" an unknown method).
// Fed the head's bytes in as many pieces as they arrive; remembers what it needs across them.
class HeadFraming {
public:
  enum class Verdict { ok, bareLf, bareCr, obsFold, requestLineSpace };

  // Checks the next bytes of the stream, starting at a message's first byte. Stops looking
  // at the empty line that ends the head (what follows is body or the next message). Once a
  // verdict other than ok is returned the stream cannot be trusted; it keeps being returned.
  Verdict feed(const char *data, size_t length);
  // Whether the head ended cleanly (its closing empty line seen, no bad framing before it).
  [[nodiscard]] bool headDone() const { return state_ == State::done && verdict_ == Verdict::ok; }
  // Ready for the head of the next message.
  void reset() { *this = HeadFraming{}; }

  static const char *describe(Verdict verdict);

private:
  // start/startCr: empty lines before the request line, which RFC 9112 2.2 lets us skip.
  enum class State { start, startCr, line, lineCr, lineStart, endCr, done };
  void checkRequestLine(char c);

  State state_ = State::start;
  Verdict verdict_ = Verdict::ok;
  bool inRequestLine_ = true;
  bool afterSpace_ = true; // a space at the start of the request line is a doubled one
  int requestLineSpaces_ = 0;
};

// The status a request's Transfer-Encoding deserves, 0 when it is acceptable: only "chunked",
// exactly once and last, is supported. Any other coding is 501 (we decode none); chunked
// repeated, or a transfer coding on an HTTP/1.0 request (RFC 9112 6.1), is 400.
int transferEncodingStatus(const Request &request);

} // namespace sockdispatch
