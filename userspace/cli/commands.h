#pragma once

#include "config/options.h"

#include <CLI/CLI.hpp>

#include <functional>

namespace sockdispatch::cli {

// Each subcommand registers itself on the app and returns what to run when it is chosen.
using Action = std::function<int()>;

Action addAdoptCommand(CLI::App &app);
Action addAttachCommand(CLI::App &app);
Action addDetachCommand(CLI::App &app);
Action addReloadCommand(CLI::App &app);
// What `attach` uses when neither a flag nor a configuration file says otherwise.
AttachOptions defaultAttachOptions();
Action addCheckConfigCommand(CLI::App &app);
Action addStatusCommand(CLI::App &app);
Action addTopCommand(CLI::App &app);
Action addTuneCommand(CLI::App &app);
Action addVersionCommand(CLI::App &app);

} // namespace sockdispatch::cli
