#include "commands.h"
#include "config/config_file.h"
#include "config/options.h"

#include <cstdio>
#include <memory>
#include <string>

namespace sockdispatch::cli {

Action addCheckConfigCommand(CLI::App &app) {
  auto path = std::make_shared<std::string>();
  CLI::App *cmd =
      app.add_subcommand("check-config", "Validate an attach configuration file, start nothing");
  cmd->footer(R"(Examples:
  sockdispatch check-config /etc/sockdispatch/web.toml
  sockdispatch check-config /usr/share/doc/sockdispatch/examples/example.toml

Checks what 'attach --config FILE' would: TOML syntax, that every key is known, that every
value has the right type and range, that 'bind' is a numeric address and 'root' a directory,
and that the file names the port (a systemd instance gets no PORT argument). Binds nothing,
loads nothing. On success prints one line: FILE: OK, then the main settings.
Exit codes: 0 valid, 2 invalid (the message names the file, line and key).)");
  cmd->add_option("file", *path, "The TOML file to check")->required();

  return [path] {
    auto file = loadConfigFile(*path, defaultAttachOptions());
    if (!file) {
      std::fprintf(stderr, "check-config: %s\n", file.error().message().c_str());
      return kExitUsage;
    }
    bool hasPort = false;
    for (const ConfigKey &key : file->keys) {
      hasPort = hasPort || key.name == "port";
    }
    if (!hasPort) {
      std::fprintf(stderr,
                   "check-config: Failed to load configuration %s: no 'port' key (a file for "
                   "'attach --config FILE' without PORT must set it)\n",
                   path->c_str());
      return kExitUsage;
    }
    const AttachOptions &options = file->options;
    std::printf("%s: OK (port %u, bind %s, %d worker%s, %s)\n", path->c_str(), options.port,
                options.bind.c_str(), options.workers, options.workers == 1 ? "" : "s",
                options.root.empty() ? "built-in page" : ("root " + options.root).c_str());
    return kExitOk;
  };
}

} // namespace sockdispatch::cli
