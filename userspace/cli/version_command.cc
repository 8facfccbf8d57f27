#include "commands.h"
#include "sockdispatch/abi.h"
#include "version.h"

#include <cstdio>

namespace sockdispatch::cli {

Action addVersionCommand(CLI::App &app) {
  app.add_subcommand("version", "Print the version and the map ABI version");
  return [] {
    std::printf("sockdispatch %s (map ABI %d)\n", SOCKDISPATCH_VERSION, SD_ABI_VERSION);
    return 0;
  };
}

} // namespace sockdispatch::cli
