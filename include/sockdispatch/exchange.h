#pragma once

/// @file
/// One request and its response, as a handler sees them, and the offload pool.

#include <sockdispatch/request.h>
#include <sockdispatch/response.h>
#include <sys/types.h>

#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <type_traits>

namespace sockdispatch {

/// The worker process a handler runs in.
struct WorkerInfo {
  uint32_t slot = 0; ///< the worker's slot (0 .. workers-1), stable across its restarts
  pid_t pid = 0;     ///< the worker's process id
};

/// One request and the response a handler builds for it.
///
/// Handlers run on the worker's event loop thread and must not block it. A handler either
/// fills response() and returns (the response is sent at once), or hands blocking work to
/// the worker's offload pool with offload() and returns (the response is sent when the work
/// returns). Requests on one connection are answered in order: the connection reads no
/// further request until an offloaded answer is sent, while the worker keeps serving every
/// other connection.
///
/// A handler that throws is answered 500 and the worker keeps serving.
class Exchange {
public:
  virtual ~Exchange() = default;

  /// The request, valid until the handler returns.
  [[nodiscard]] virtual const HttpRequest &request() const = 0;
  /// The response sent when the handler returns (unless it called offload()).
  virtual HttpResponse &response() = 0;
  /// Which worker runs the handler.
  [[nodiscard]] virtual const WorkerInfo &worker() const = 0;

  /// Runs `work` on one of the worker's pool threads; what it returns is the response.
  /// `work` must not touch the request (copy what it needs into its closure) or the loop's
  /// state. If it throws, the client gets 500. If the pool is saturated (every thread busy
  /// and ServerOptions::offloadQueue jobs waiting), nothing runs and the client gets 503
  /// with Retry-After: returns false then. Call it at most once per request.
  virtual bool offload(std::function<HttpResponse()> work) = 0;

  /// Like offload(work), but the response is made by `then(result)`, called back on the
  /// event loop thread with what `work` returned (EventMachine's `defer(operation,
  /// callback)`): `then` may use loop-thread state such as a per-worker cache. If `work`
  /// throws, `then` is not called and the client gets 500; likewise if `then` throws.
  template <typename Work, typename Then>
  requires std::invocable<Work &> && std::invocable<Then &, std::invoke_result_t<Work &> &&> bool
  offload(Work work, Then then) {
    using T = std::invoke_result_t<Work &>;
    auto value = std::make_shared<std::optional<T>>();
    return offloadThen([value, work = std::move(work)]() mutable { value->emplace(work()); },
                       [value, then = std::move(then)]() mutable -> HttpResponse {
                         return then(std::move(**value));
                       });
  }

protected:
  Exchange() = default;
  Exchange(const Exchange &) = default;
  Exchange &operator=(const Exchange &) = default;
  /// The mechanism under both offload() forms: `work` on a pool thread, then `then` on the
  /// loop thread to make the response.
  virtual bool offloadThen(std::function<void()> work, std::function<HttpResponse()> then) = 0;
};

} // namespace sockdispatch
