#include "http/http_framing.h"

#include <strings.h>

namespace sockdispatch {

namespace {

bool equalsNoCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && ::strncasecmp(a.data(), b.data(), a.size()) == 0;
}

} // namespace

HeadFraming::Verdict HeadFraming::feed(const char *data, size_t length) {
  for (size_t i = 0; i < length && verdict_ == Verdict::ok && state_ != State::done; ++i) {
    char c = data[i];
    switch (state_) {
    case State::start: state_ = c == '\r' ? State::startCr : State::line; break;
    case State::startCr: state_ = State::start; break;
    case State::line: state_ = c == '\r' ? State::lineCr : State::line; break;
    case State::lineCr: state_ = State::lineStart; break;
    case State::lineStart:
      if (c == ' ' || c == '\t') {
        verdict_ = Verdict::obsFold;
      }
      state_ = c == '\r' ? State::endCr : State::line;
      break;
    case State::endCr: state_ = State::done; break;
    case State::done: break;
    }
    if (state_ == State::line && inRequestLine_) {
      checkRequestLine(c);
    } else if (state_ == State::lineCr) {
      inRequestLine_ = false;
    }
    bool afterCr = state_ == State::start || state_ == State::lineStart || state_ == State::done;
    if (afterCr && c != '\n') {
      verdict_ = Verdict::bareCr; // a CR not followed by LF
    } else if (!afterCr && c == '\n') {
      verdict_ = Verdict::bareLf; // a LF not preceded by CR
    }
  }
  return verdict_;
}

void HeadFraming::checkRequestLine(char c) {
  if (c == ' ') {
    if (afterSpace_ || ++requestLineSpaces_ > 2) {
      verdict_ = Verdict::requestLineSpace;
    }
    afterSpace_ = true;
    return;
  }
  afterSpace_ = false;
  if (c == '\t' || c == '\v' || c == '\f') {
    verdict_ = Verdict::requestLineSpace;
  }
}

const char *HeadFraming::describe(Verdict verdict) {
  switch (verdict) {
  case Verdict::ok: return "ok";
  case Verdict::bareLf: return "line ends in a bare LF";
  case Verdict::bareCr: return "bare CR in the request head";
  case Verdict::obsFold: return "obsolete line folding";
  case Verdict::requestLineSpace: return "request line parts not separated by single spaces";
  }
  return "invalid framing";
}

int transferEncodingStatus(const Request &request) {
  bool present = false;
  int chunked = 0;
  for (const auto &[name, value] : request.headers) {
    if (!equalsNoCase(name, "Transfer-Encoding")) {
      continue;
    }
    present = true;
    std::string_view rest = value;
    while (true) {
      auto comma = rest.find(',');
      std::string_view coding = trimmed(rest.substr(0, comma));
      // Parameters (";q=...") belong to the coding; none applies to chunked.
      if (equalsNoCase(coding, "chunked")) {
        ++chunked;
      } else if (!coding.empty()) {
        return 501;
      }
      if (comma == std::string_view::npos) {
        break;
      }
      rest.remove_prefix(comma + 1);
    }
  }
  if (!present) {
    return 0;
  }
  // Every coding seen is chunked (any other returned above), so chunked is also the last.
  if (request.versionMinor == 0 || chunked != 1) {
    return 400;
  }
  return 0;
}

} // namespace sockdispatch
