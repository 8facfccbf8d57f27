// sockdispatch: the command-line entry point. Each verb lives in its own *_command.cc.
#include "commands.h"
#include "config/options.h"
#include "version.h"

#include <cstdio>
#include <exception>
#include <map>
#include <string>

namespace {

int run(int argc, char **argv) {
  using namespace sockdispatch;
  CLI::App app("sockdispatch: an eBPF-assisted socket dispatcher and pre-forking HTTP/1.1 "
               "server",
               "sockdispatch");
  app.set_version_flag("--version", SOCKDISPATCH_VERSION);
  app.require_subcommand(1);
  std::map<std::string, cli::Action> actions{
      {"adopt", cli::addAdoptCommand(app)},
      {"attach", cli::addAttachCommand(app)},
      {"check-config", cli::addCheckConfigCommand(app)},
      {"detach", cli::addDetachCommand(app)},
      {"reload", cli::addReloadCommand(app)},
      {"status", cli::addStatusCommand(app)},
      {"top", cli::addTopCommand(app)},
      {"tune", cli::addTuneCommand(app)},
      {"version", cli::addVersionCommand(app)},
  };
  if (argc > 1 && argv[1][0] != '-' && actions.count(argv[1]) == 0) {
    std::string known;
    for (const auto &entry : actions) {
      known += (known.empty() ? "" : ", ") + entry.first;
    }
    std::fprintf(stderr, "sockdispatch: unknown subcommand '%s' (expected one of: %s)\n", argv[1],
                 known.c_str());
    return kExitUsage;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp &help) {
    return app.exit(help);
  } catch (const CLI::CallForAllHelp &help) {
    return app.exit(help);
  } catch (const CLI::CallForVersion &version) {
    return app.exit(version);
  } catch (const CLI::ParseError &error) {
    std::string verb = "sockdispatch";
    for (const auto *sub : app.get_subcommands()) {
      verb = sub->get_name();
    }
    std::fprintf(stderr, "%s: %s\nRun 'sockdispatch %s--help' for usage.\n", verb.c_str(),
                 error.what(), verb == "sockdispatch" ? "" : (verb + " ").c_str());
    return kExitUsage;
  }
  for (const auto *sub : app.get_subcommands()) {
    return actions.at(sub->get_name())();
  }
  return kExitUsage;
}

} // namespace

int main(int argc, char **argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception &error) {
    std::fprintf(stderr, "sockdispatch: %s\n", error.what());
    return sockdispatch::kExitFailure;
  }
}
