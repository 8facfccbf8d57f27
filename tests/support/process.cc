#include "support/process.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <set>
#include <sstream>

namespace sockdispatch::test {

std::unique_ptr<Process> Process::start(const std::vector<std::string> &argv) {
  std::unique_ptr<Process> process(new Process());
  char pathTemplate[] = "/tmp/sockdispatch-test-stderr-XXXXXX";
  int errFd = ::mkstemp(pathTemplate);
  if (errFd < 0) {
    return nullptr;
  }
  process->stderrPath_ = pathTemplate;
  int pipeFds[2];
  if (::pipe2(pipeFds, O_CLOEXEC) != 0) {
    ::close(errFd);
    return nullptr;
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(pipeFds[1], STDOUT_FILENO);
    ::dup2(errFd, STDERR_FILENO);
    std::vector<char *> args;
    for (const auto &arg : argv) {
      args.push_back(const_cast<char *>(arg.c_str()));
    }
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(pipeFds[1]);
  ::close(errFd);
  process->stdout_.reset(pipeFds[0]);
  process->pid_ = pid;
  return process;
}

Process::~Process() {
  if (pid_ > 0 && !exitCode_) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  if (!stderrPath_.empty()) {
    ::unlink(stderrPath_.c_str());
  }
}

std::optional<std::string> Process::readLine(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto newline = stdoutBuffer_.find('\n');
    if (newline != std::string::npos) {
      std::string line = stdoutBuffer_.substr(0, newline);
      stdoutBuffer_.erase(0, newline + 1);
      return line;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return std::nullopt;
    }
    pollfd pfd{stdout_.get(), POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) {
      return std::nullopt;
    }
    char chunk[4096];
    ssize_t n = ::read(stdout_.get(), chunk, sizeof(chunk));
    if (n <= 0) {
      return std::nullopt;
    }
    stdoutBuffer_.append(chunk, static_cast<size_t>(n));
  }
}

std::string Process::stderrText() const {
  std::ifstream file(stderrPath_);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

void Process::signal(int signo) const {
  if (pid_ > 0 && !exitCode_) {
    ::kill(pid_, signo);
  }
}

std::optional<int> Process::wait(std::chrono::milliseconds timeout) {
  if (exitCode_) {
    return exitCode_;
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t done = ::waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
      exitCode_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return exitCode_;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return std::nullopt;
    }
    ::usleep(5000);
  }
}

Completed runSockdispatch(const std::vector<std::string> &args, std::chrono::milliseconds timeout) {
  std::vector<std::string> argv{SOCKDISPATCH_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return runCommand(argv, timeout);
}

Completed runCommand(const std::vector<std::string> &argv, std::chrono::milliseconds timeout) {
  auto process = Process::start(argv);
  Completed done;
  if (!process) {
    return done;
  }
  while (auto line = process->readLine(timeout)) {
    done.out += *line + "\n";
  }
  auto code = process->wait(timeout);
  done.code = code.value_or(-1);
  done.err = process->stderrText();
  return done;
}

std::unique_ptr<Attachment> Attachment::start(const std::vector<std::string> &extraArgs,
                                              std::chrono::milliseconds timeout,
                                              const std::vector<std::string> &launcher) {
  std::vector<std::string> argv = launcher;
  argv.insert(argv.end(), {SOCKDISPATCH_BINARY, "attach"});
  argv.insert(argv.end(), extraArgs.begin(), extraArgs.end());
  auto attachment = std::make_unique<Attachment>();
  attachment->process_ = Process::start(argv);
  if (!attachment->process_) {
    ADD_FAILURE() << "could not start " << SOCKDISPATCH_BINARY;
    return nullptr;
  }
  static const std::regex listening(R"(listening on .*:(\d+) )");
  auto line = attachment->process_->readLine(timeout);
  std::smatch match;
  if (!line || !std::regex_search(*line, match, listening)) {
    ADD_FAILURE() << "attach did not report its port; stdout: " << line.value_or("<none>")
                  << "\nstderr:\n"
                  << attachment->process_->stderrText();
    return nullptr;
  }
  attachment->port_ = static_cast<uint16_t>(std::stoi(match[1]));
  return attachment;
}

Attachment::~Attachment() {
  if (process_) {
    stop(10s);
  }
}

std::optional<int> Attachment::stop(std::chrono::milliseconds timeout) {
  process_->signal(SIGTERM);
  return process_->wait(timeout);
}

namespace {

// The state letter of /proc/PID/stat (after the parenthesised command name, which may
// itself hold spaces or parentheses), or '?' when it cannot be read.
char processState(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) {
    return '?';
  }
  return stat[close + 2];
}

} // namespace

bool freeze(pid_t pid, std::chrono::milliseconds timeout) {
  if (::kill(pid, SIGSTOP) != 0) {
    return false;
  }
  return eventually([pid] { return processState(pid) == 'T'; }, timeout);
}

size_t tcpSocketsHeldBy(pid_t pid) {
  std::set<std::string> tcpInodes;
  for (const char *table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line); // the header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string field;
      for (int i = 0; i < 10 && fields >> field; ++i) {
      }
      tcpInodes.insert(field); // the tenth column: the socket's inode
    }
  }
  size_t held = 0;
  std::error_code error;
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  for (const auto &entry : std::filesystem::directory_iterator(dir, error)) {
    std::string target = std::filesystem::read_symlink(entry.path(), error).string();
    if (target.starts_with("socket:[") && target.ends_with("]") &&
        tcpInodes.count(target.substr(8, target.size() - 9)) != 0) {
      ++held;
    }
  }
  return held;
}

bool haveBpfPrivileges() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capget, &header, data) != 0) {
    return false;
  }
  auto has = [&](int cap) { return (data[cap / 32].effective & (1U << (cap % 32))) != 0; };
  return has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_NET_ADMIN));
}

} // namespace sockdispatch::test
