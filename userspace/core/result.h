#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace sockdispatch {

// An OS-facing failure: the errno captured at once, and what we were doing, e.g.
// "bind 127.0.0.1:8080". message() reads "Failed to bind 127.0.0.1:8080: Address in use".
struct Error {
  int code = 0;        // errno value, 0 when the failure is not a syscall's
  std::string context; // "<verb> <object>"
  std::string detail;  // replaces strerror(code) when set

  [[nodiscard]] std::string message() const {
    std::string reason = !detail.empty() ? detail : std::string(std::strerror(code));
    return "Failed to " + context + ": " + reason;
  }
};

// The errno of the call that just failed, with context.
inline Error osError(std::string context) {
  return Error{errno, std::move(context), {}};
}
inline Error osError(int code, std::string context) {
  return Error{code, std::move(context), {}};
}
inline Error logicError(std::string context, std::string detail) {
  return Error{0, std::move(context), std::move(detail)};
}

// An expected-style result: a value or an Error. (std::expected arrives in C++23.)
template <typename T> class [[nodiscard]] Result {
public:
  Result(T value) : state_(std::move(value)) {}     // NOLINT(google-explicit-constructor)
  Result(Error error) : state_(std::move(error)) {} // NOLINT(google-explicit-constructor)

  [[nodiscard]] bool ok() const { return std::holds_alternative<T>(state_); }
  explicit operator bool() const { return ok(); }
  T &value() & { return std::get<T>(state_); }
  const T &value() const & { return std::get<T>(state_); }
  T &&value() && { return std::get<T>(std::move(state_)); }
  T *operator->() { return &value(); }
  T &operator*() & { return value(); }
  [[nodiscard]] const Error &error() const { return std::get<Error>(state_); }

private:
  std::variant<T, Error> state_;
};

template <> class [[nodiscard]] Result<void> {
public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), failed_(true) {} // NOLINT

  [[nodiscard]] bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  [[nodiscard]] const Error &error() const { return error_; }

private:
  Error error_;
  bool failed_ = false;
};

} // namespace sockdispatch
