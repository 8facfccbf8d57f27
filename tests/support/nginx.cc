#include "support/nginx.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

namespace sockdispatch::test {

namespace {

constexpr const char *kNginx = "/usr/sbin/nginx";

std::string config(int workers, uint16_t port, bool reuseport, const std::string &prefix) {
  std::ostringstream out;
  out << "worker_processes " << workers << ";\n"
      << "daemon off;\n"
      << "pid " << prefix << "/nginx.pid;\n"
      << "error_log stderr warn;\n"
      << "events { worker_connections 4096; }\n"
      << "http {\n"
      << "  access_log off;\n"
      << "  server {\n"
      << "    listen 127.0.0.1:" << port << (reuseport ? " reuseport" : "") << ";\n"
      << "    location / { return 200 \"ok\\n\"; }\n"
      << "  }\n"
      << "}\n";
  return out.str();
}

bool answers(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr *>(&address), sizeof(address)) == 0;
  ::close(fd);
  return ok;
}

} // namespace

bool haveNginx() {
  return ::access(kNginx, X_OK) == 0;
}

uint16_t unusedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr *>(&address), sizeof(address)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr *>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  ::close(fd);
  return port;
}

std::unique_ptr<Nginx> Nginx::start(int workers, bool reuseport) {
  std::unique_ptr<Nginx> nginx(new Nginx());
  nginx->workers_ = workers;
  nginx->reuseport_ = reuseport;
  nginx->port_ = unusedPort();
  std::string conf = nginx->prefix_.write(
      "nginx.conf", config(workers, nginx->port_, reuseport, nginx->prefix_.path()));
  nginx->process_ =
      Process::start({kNginx, "-e", "stderr", "-p", nginx->prefix_.path() + "/", "-c", conf});
  const Nginx &running = *nginx;
  bool serving = eventually(
      [&] {
        return answers(running.port_) &&
               running.workerPids().size() == static_cast<size_t>(running.workers_);
      },
      10s);
  if (!serving) {
    ADD_FAILURE() << "nginx did not serve on port " << nginx->port_ << ": "
                  << nginx->process_->stderrText();
    return nullptr;
  }
  return nginx;
}

Nginx::~Nginx() {
  if (process_ && !stopped_) {
    (void)stop(5s);
  }
}

std::vector<pid_t> Nginx::workerPids() const {
  std::string pid = std::to_string(process_->pid());
  std::ifstream children("/proc/" + pid + "/task/" + pid + "/children");
  std::vector<pid_t> pids;
  pid_t child = 0;
  while (children >> child) {
    pids.push_back(child);
  }
  return pids;
}

bool Nginx::reload(int workers, std::chrono::milliseconds timeout) {
  workers_ = workers;
  (void)prefix_.write("nginx.conf", config(workers, port_, reuseport_, prefix_.path()));
  return reload(timeout);
}

bool Nginx::reload(std::chrono::milliseconds timeout) {
  std::vector<pid_t> old = workerPids();
  process_->signal(SIGHUP);
  return eventually(
      [&] {
        std::vector<pid_t> now = workerPids();
        return now.size() == static_cast<size_t>(workers_) &&
               std::none_of(now.begin(), now.end(), [&](pid_t pid) {
                 return std::find(old.begin(), old.end(), pid) != old.end();
               });
      },
      timeout);
}

std::optional<int> Nginx::stop(std::chrono::milliseconds timeout) {
  if (!stopped_) {
    process_->signal(SIGQUIT);
  }
  stopped_ = true;
  return process_->wait(timeout);
}

} // namespace sockdispatch::test
