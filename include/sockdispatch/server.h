#pragma once

/// @file
/// The server: a master process that forks workers, each running the handlers on its own
/// event loop, with connections spread over the workers by the kernel program.

#include <sockdispatch/exchange.h>
#include <sockdispatch/request.h>
#include <sockdispatch/response.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace sockdispatch {

/// Answers one request. Runs in a worker, on its event loop thread: it must not block (hand
/// blocking work to Exchange::offload()).
using RequestHandler = std::function<void(Exchange &exchange)>;

/// Called in each worker process when it starts (before it serves) or stops (after its last
/// answer). A start hook that throws stops that worker for good (it is not respawned).
using WorkerHook = std::function<void(const WorkerInfo &worker)>;

/// Limits each connection enforces, and the status each maps to. The defaults are the
/// `sockdispatch attach` defaults (docs/operations.md).
struct ServerLimits {
  size_t maxTargetBytes = 8UL * 1024;             ///< 414 above
  size_t maxHeaderBytes = 32UL * 1024;            ///< 431 above (request line and headers)
  size_t maxHeaderFields = 100;                   ///< 431 above (fields in one request)
  size_t maxBodyBytes = 1024UL * 1024;            ///< 413 above
  uint32_t maxRequestsPerConnection = 1000;       ///< the last is answered with Connection: close
  std::chrono::milliseconds headerTimeout{10000}; ///< to the end of the headers, else 408
  std::chrono::milliseconds bodyTimeout{30000};   ///< to the end of the body, else 408
  std::chrono::milliseconds idleTimeout{60000};   ///< keep-alive wait for the next request
  std::chrono::milliseconds writeTimeout{30000};  ///< answers not taken by the client: close
};

/// How connections reach the workers (`sockdispatch attach --mode`).
enum class DispatchMode {
  automatic, ///< the kernel program where it loads, else the line (one warning says why)
  ebpf,      ///< the kernel program; run() fails (exit code 1) where it cannot load
  line,      ///< the master accepts and the workers pass connections down a line
};

/// The balancing policy a Server starts with (`sockdispatch attach --policy`); the CLI's
/// `sockdispatch tune PORT --policy` changes it while it runs. See docs/operations.md.
enum class Policy {
  skip_load,   ///< the design's reference heuristic (nginz's line, mirrored in the kernel)
  least_conn,  ///< fewest open plus queued connections; avoids busy workers (the default)
  p2c,         ///< the less loaded of two random workers
  round_robin, ///< each worker in turn
  weighted,    ///< in proportion to each worker's weight
  hash,        ///< the kernel's reuseport hash
};

/// Everything a Server is told; the same settings as `sockdispatch attach`.
struct ServerOptions {
  uint16_t port = 0;                           ///< 0: an ephemeral port (printed when listening)
  std::string bind = "0.0.0.0";                ///< a numeric IPv4 or IPv6 address
  int workers = 1;                             ///< worker processes (fixed pool)
  int minWorkers = 0;                          ///< dynamic pool, when maxWorkers > 0 (see the CLI's
  int maxWorkers = 0;                          ///< --min-workers/--max-workers)
  int backlog = 511;                           ///< listen(2) backlog of each worker's socket
  DispatchMode mode = DispatchMode::automatic; ///< see DispatchMode
  Policy policy = Policy::least_conn;          ///< see Policy
  /// Open connections at which a worker takes no more (chosen by no policy); 0: no limit.
  uint32_t maxConnections = 0;
  ServerLimits limits;                      ///< per-connection limits and timeouts
  std::chrono::seconds shutdownTimeout{10}; ///< in-flight requests' grace at stop
  /// TCP_DEFER_ACCEPT on the listeners: a connection is accepted once its request begins to
  /// arrive, or after this long without one. 0 (the default): accepted at the handshake. See
  /// the CLI's --defer-accept for what it costs a worker's load figure.
  std::chrono::seconds deferAccept{0};
  /// Threads of each worker's offload pool (created in the worker, after fork). 0: no pool;
  /// Exchange::offload() then answers 503.
  size_t offloadThreads = 4;
  /// Offloaded jobs that may wait for a thread, per worker, beyond the running ones. Above
  /// it, offload() answers 503 with Retry-After (back-pressure, never unbounded growth).
  size_t offloadQueue = 64;
  /// The Retry-After (seconds) of a 503 for a saturated pool.
  uint32_t retryAfterSeconds = 1;
  bool verbose = false; ///< debug logging
};

/// An HTTP/1.1 server in the sockdispatch model.
///
/// Configure it, add routes or a fallback handler, then call run() from main(): run()
/// becomes the master process. It binds the port, loads the dispatch program, forks the
/// workers (each runs the handlers on its own libevent loop), respawns crashed workers,
/// reloads on SIGHUP and stops on SIGTERM/SIGINT (gracefully on SIGQUIT), losing no
/// connection the kernel accepted. The attachment is visible to the CLI like any other
/// (`sockdispatch status PORT`, `sockdispatch tune PORT --policy least_conn`).
///
/// Routing: an exact path match picks the route's handlers; a path with routes but none for
/// the request's method is answered 405 with Allow; anything else goes to the fallback
/// handler, or is answered 404 without one. HEAD is served by a GET route (the body is not
/// sent).
///
/// Needs root, or CAP_BPF with CAP_NET_ADMIN, as the CLI does.
class Server {
public:
  explicit Server(ServerOptions options = {});
  ~Server();
  Server(const Server &) = delete;
  Server &operator=(const Server &) = delete;

  /// Answers `method` requests (e.g. "GET") whose path is exactly `path` (e.g. "/api/items").
  Server &route(std::string method, std::string path, RequestHandler handler);
  /// Answers every request no route takes.
  Server &fallback(RequestHandler handler);
  /// Runs in each worker when it starts, before it serves.
  Server &onWorkerStart(WorkerHook hook);
  /// Runs in each worker when it stops, after its offload pool has finished.
  Server &onWorkerStop(WorkerHook hook);

  /// The options, for reading and for changes before run().
  ServerOptions &options();

  /// Becomes the master: serves until SIGTERM, SIGINT or SIGQUIT. Prints "listening on
  /// ADDRESS:PORT (...)" on stdout once every worker serves. Returns the process exit code:
  /// 0 after a clean stop, 2 for a bad option, 1 for another start-up failure (the reason is
  /// logged on stderr).
  int run();

private:
  struct Routes;
  std::shared_ptr<Routes> routes_;
  ServerOptions options_;
};

} // namespace sockdispatch
