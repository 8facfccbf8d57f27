#include "support/fleet.h"

#include "support/nginx.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

namespace sockdispatch::test {

namespace {

constexpr const char *kIp = "/usr/sbin/ip";
constexpr const char *kHaproxy = "/usr/sbin/haproxy";

bool ip(const std::vector<std::string> &args) {
  std::vector<std::string> argv{kIp};
  argv.insert(argv.end(), args.begin(), args.end());
  Completed done = runCommand(argv, std::chrono::seconds(10));
  if (done.code != 0) {
    std::string command = kIp;
    for (const auto &arg : args) {
      command += " " + arg;
    }
    ADD_FAILURE() << command << ": " << done.err;
  }
  return done.code == 0;
}

// 10.A.B.C/30 per host: A and B from this process's pid, C from the host's index.
std::string subnetPrefix() {
  auto pid = static_cast<unsigned>(::getpid());
  return "10." + std::to_string(64 + pid % 128) + "." + std::to_string((pid / 128) % 256) + ".";
}

bool connectTo(int fd, const std::string &address, uint16_t port) {
  sockaddr_in peer{};
  peer.sin_family = AF_INET;
  peer.sin_port = htons(port);
  ::inet_pton(AF_INET, address.c_str(), &peer.sin_addr);
  return ::connect(fd, reinterpret_cast<sockaddr *>(&peer), sizeof(peer)) == 0;
}

std::optional<std::string> readAll(int fd) {
  std::string text;
  std::array<char, 4096> buffer{};
  for (;;) {
    ssize_t got = ::recv(fd, buffer.data(), buffer.size(), 0);
    if (got == 0) {
      return text;
    }
    if (got < 0) {
      return std::nullopt;
    }
    text.append(buffer.data(), static_cast<size_t>(got));
  }
}

} // namespace

bool haveHaproxy() {
  return ::access(kHaproxy, X_OK) == 0 && ::access(kIp, X_OK) == 0;
}

std::unique_ptr<NetnsHost> NetnsHost::create(int index) {
  std::unique_ptr<NetnsHost> host(new NetnsHost());
  std::string id = std::to_string(::getpid()) + "h" + std::to_string(index);
  host->name_ = "sdf" + id;
  host->veth_ = "sdfv" + id; // at most 15 characters
  std::string peer = "sdfp" + id;
  std::string prefix = subnetPrefix();
  std::string root = prefix + std::to_string(index * 4 + 1);
  host->address_ = prefix + std::to_string(index * 4 + 2);
  if (!ip({"netns", "add", host->name_})) {
    host->name_.clear(); // nothing to delete
    return nullptr;
  }
  bool made = ip({"link", "add", host->veth_, "type", "veth", "peer", "name", peer, "netns",
                  host->name_}) &&
              ip({"addr", "add", root + "/30", "dev", host->veth_}) &&
              ip({"link", "set", host->veth_, "up"}) &&
              ip({"-n", host->name_, "addr", "add", host->address_ + "/30", "dev", peer}) &&
              ip({"-n", host->name_, "link", "set", peer, "up"}) &&
              ip({"-n", host->name_, "link", "set", "lo", "up"});
  if (!made) {
    return nullptr; // the destructor removes what was made
  }
  return host;
}

NetnsHost::~NetnsHost() {
  if (name_.empty()) {
    return;
  }
  for (pid_t worker : workerPids()) {
    ::kill(worker, SIGKILL); // stopped workers too: SIGKILL needs no SIGCONT
  }
  master_.reset(); // SIGKILL and reaped
  Completed pids = runCommand({kIp, "netns", "pids", name_}, std::chrono::seconds(5));
  std::istringstream lines(pids.out);
  for (std::string pid; std::getline(lines, pid);) {
    if (!pid.empty()) {
      ::kill(static_cast<pid_t>(std::stol(pid)), SIGKILL);
    }
  }
  runCommand({kIp, "netns", "del", name_}, std::chrono::seconds(10)); // its veth end with it
  runCommand({kIp, "link", "del", veth_}, std::chrono::seconds(5));   // gone already, normally
  std::error_code ignored;
  std::filesystem::remove_all("/run/sockdispatch/netns/" + name_, ignored);
}

Completed NetnsHost::run(const std::vector<std::string> &args,
                         std::chrono::milliseconds timeout) const {
  std::vector<std::string> argv{kIp, "netns", "exec", name_, SOCKDISPATCH_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return runCommand(argv, timeout);
}

std::unique_ptr<Process> NetnsHost::start(const std::vector<std::string> &args) const {
  std::vector<std::string> argv{kIp, "netns", "exec", name_, SOCKDISPATCH_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return Process::start(argv);
}

bool NetnsHost::attach(const std::vector<std::string> &args) {
  std::vector<std::string> full{"attach"};
  full.insert(full.end(), args.begin(), args.end());
  master_ = start(full); // `ip netns exec` execs: the process is the master itself
  if (!master_) {
    return false;
  }
  auto line = master_->readLine(std::chrono::seconds(20));
  if (!line || line->find("listening on") == std::string::npos) {
    ADD_FAILURE() << "host " << name_ << " did not serve: " << master_->stderrText();
    return false;
  }
  return true;
}

std::vector<pid_t> NetnsHost::workerPids() const {
  std::vector<pid_t> pids;
  if (!master_) {
    return pids;
  }
  std::string path = "/proc/" + std::to_string(master_->pid()) + "/task/" +
                     std::to_string(master_->pid()) + "/children";
  std::ifstream children(path);
  for (pid_t pid = 0; children >> pid;) {
    pids.push_back(pid);
  }
  return pids;
}

std::optional<std::string> NetnsHost::askAgent(uint16_t port) const {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  timeval bound{5, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof(bound));
  if (!connectTo(fd.get(), address_, port)) {
    return std::nullopt;
  }
  return readAll(fd.get());
}

std::unique_ptr<Haproxy> Haproxy::start(const std::vector<Server> &servers,
                                        const Settings &settings) {
  if (!haveHaproxy()) {
    ADD_FAILURE() << kHaproxy << " is not installed (packaging/install-deps.sh)";
    return nullptr;
  }
  std::unique_ptr<Haproxy> proxy(new Haproxy());
  proxy->port_ = unusedPort();
  std::ostringstream config;
  config << "global\n"
         << "  stats socket " << proxy->dir_.path() << "/admin.sock mode 600 level admin\n"
         << "  maxconn 4096\n"
         << "defaults\n"
         << "  mode http\n"
         << "  timeout connect 1s\n"
         << "  timeout client 30s\n"
         << "  timeout server 30s\n"
         << "  retries 3\n"
         << "  option redispatch\n"
         << "  retry-on conn-failure empty-response response-timeout\n"
         << "frontend front\n"
         << "  bind 127.0.0.1:" << proxy->port_ << "\n"
         << "  default_backend hosts\n"
         << "backend hosts\n"
         << "  balance " << settings.balance << "\n";
  for (const Server &server : servers) {
    config << "  server " << server.name << " " << server.address << ":" << server.port
           << " weight 100 check inter " << settings.checkInterval.count() << "ms";
    if (server.agentPort != 0) {
      config << " agent-check agent-port " << server.agentPort << " agent-inter "
             << settings.agentInterval.count() << "ms";
    }
    config << "\n";
  }
  std::string path = proxy->dir_.write("haproxy.cfg", config.str());
  proxy->process_ = Process::start({kHaproxy, "-db", "-f", path});
  if (!proxy->process_) {
    return nullptr;
  }
  bool serving = eventually(
      [&] {
        UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        return connectTo(fd.get(), "127.0.0.1", proxy->port_) &&
               ::access((proxy->dir_.path() + "/admin.sock").c_str(), F_OK) == 0;
      },
      std::chrono::seconds(10));
  if (!serving) {
    ADD_FAILURE() << "haproxy did not serve: " << proxy->process_->stderrText();
    return nullptr;
  }
  return proxy;
}

Haproxy::~Haproxy() {
  if (process_) {
    process_->signal(SIGTERM);
    process_->wait(std::chrono::seconds(5));
  }
}

std::string Haproxy::command(const std::string &line) const {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  timeval bound{5, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof(bound));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::string path = dir_.path() + "/admin.sock";
  path.copy(address.sun_path, sizeof(address.sun_path) - 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr *>(&address), sizeof(address)) != 0) {
    return {};
  }
  std::string request = line + "\n";
  if (::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) < 0) {
    return {};
  }
  return readAll(fd.get()).value_or("");
}

std::map<std::string, Haproxy::ServerView> Haproxy::servers() const {
  // "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight ..."
  std::istringstream lines(command("show servers state hosts"));
  std::vector<std::string> columns;
  std::map<std::string, ServerView> views;
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::vector<std::string> fields;
    for (std::string word; words >> word;) {
      fields.push_back(word);
    }
    if (!fields.empty() && fields[0] == "#") {
      columns.assign(fields.begin() + 1, fields.end());
      continue;
    }
    if (columns.empty() || fields.size() < columns.size()) {
      continue;
    }
    auto field = [&](const std::string &name) -> std::string {
      for (size_t i = 0; i < columns.size(); ++i) {
        if (columns[i] == name) {
          return fields[i];
        }
      }
      return {};
    };
    ServerView view;
    view.weight = std::stoi(field("srv_uweight"));
    int admin = std::stoi(field("srv_admin_state"));
    view.drained = (admin & 0x18) != 0; // SRV_ADMF_FDRAIN | SRV_ADMF_IDRAIN
    view.operatingState = std::stoi(field("srv_op_state"));
    views[field("srv_name")] = view;
  }
  return views;
}

} // namespace sockdispatch::test
