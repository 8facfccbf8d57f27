// The public request view and response (include/sockdispatch/request.h, response.h).
#include "http/http_message.h"
#include "library/library_handler.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace sockdispatch {

std::string_view HttpRequest::method() const {
  return request_->method;
}
std::string_view HttpRequest::target() const {
  return request_->target;
}
std::string_view HttpRequest::path() const {
  std::string_view target = request_->target;
  return target.substr(0, target.find('?'));
}
std::string_view HttpRequest::query() const {
  std::string_view target = request_->target;
  size_t mark = target.find('?');
  return mark == std::string_view::npos ? std::string_view{} : target.substr(mark + 1);
}
std::string_view HttpRequest::header(std::string_view name) const {
  return request_->header(name);
}
std::vector<std::pair<std::string_view, std::string_view>> HttpRequest::headers() const {
  std::vector<std::pair<std::string_view, std::string_view>> out;
  out.reserve(request_->headers.size());
  for (const auto &[name, value] : request_->headers) {
    out.emplace_back(name, value);
  }
  return out;
}
std::string_view HttpRequest::body() const {
  return request_->body;
}
int HttpRequest::versionMinor() const {
  return request_->versionMinor;
}
bool HttpRequest::keepAlive() const {
  return request_->keepAlive;
}

HttpResponse::HttpResponse(int status, std::string body, std::string_view contentType)
    : status_(status) {
  setBody(std::move(body), contentType);
}

HttpResponse::~HttpResponse() {
  if (fileFd_ >= 0) {
    ::close(fileFd_);
  }
}

HttpResponse::HttpResponse(HttpResponse &&other) noexcept
    : status_(other.status_), headers_(std::move(other.headers_)), body_(std::move(other.body_)),
      fileFd_(std::exchange(other.fileFd_, -1)), fileOffset_(other.fileOffset_),
      fileLength_(other.fileLength_), stream_(std::move(other.stream_)), close_(other.close_) {}

HttpResponse &HttpResponse::operator=(HttpResponse &&other) noexcept {
  if (this != &other) {
    if (fileFd_ >= 0) {
      ::close(fileFd_);
    }
    status_ = other.status_;
    headers_ = std::move(other.headers_);
    body_ = std::move(other.body_);
    fileFd_ = std::exchange(other.fileFd_, -1);
    fileOffset_ = other.fileOffset_;
    fileLength_ = other.fileLength_;
    stream_ = std::move(other.stream_);
    close_ = other.close_;
  }
  return *this;
}

HttpResponse &HttpResponse::setStatus(int status) {
  status_ = status;
  return *this;
}

HttpResponse &HttpResponse::addHeader(std::string name, std::string value) {
  headers_.emplace_back(std::move(name), std::move(value));
  return *this;
}

HttpResponse &HttpResponse::setBody(std::string body, std::string_view contentType) {
  if (fileFd_ >= 0) {
    ::close(fileFd_);
    fileFd_ = -1;
  }
  stream_ = nullptr;
  body_ = std::move(body);
  if (!contentType.empty()) {
    addHeader("Content-Type", std::string(contentType));
  }
  return *this;
}

HttpResponse &HttpResponse::setFileBody(int fd, off_t offset, uint64_t length) {
  if (fileFd_ >= 0) {
    ::close(fileFd_);
  }
  body_.clear();
  stream_ = nullptr;
  fileFd_ = fd;
  fileOffset_ = offset;
  fileLength_ = length;
  return *this;
}

bool HttpResponse::setFileBody(const std::string &path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return false;
  }
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    int saved = S_ISREG(info.st_mode) ? errno : EISDIR;
    ::close(fd);
    errno = saved;
    return false;
  }
  setFileBody(fd, 0, static_cast<uint64_t>(info.st_size));
  return true;
}

HttpResponse &HttpResponse::setStreamedBody(BodyStream next) {
  if (fileFd_ >= 0) {
    ::close(fileFd_);
    fileFd_ = -1;
  }
  body_.clear();
  stream_ = std::move(next);
  return *this;
}

HttpResponse &HttpResponse::closeConnection() {
  close_ = true;
  return *this;
}

Response ResponseAccess::toInternal(HttpResponse &&from) {
  Response out;
  out.status = from.status_;
  out.headers = std::move(from.headers_);
  out.close = from.close_;
  if (from.stream_) {
    out.stream = std::move(from.stream_);
  } else if (from.fileFd_ >= 0) {
    out.file = UniqueFd(std::exchange(from.fileFd_, -1));
    out.fileOffset = from.fileOffset_;
    out.fileLength = from.fileLength_;
  } else {
    out.body = std::move(from.body_);
  }
  return out;
}

} // namespace sockdispatch
