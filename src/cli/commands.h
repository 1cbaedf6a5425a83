// Registration of the CLI subcommands. Each add_*_command adds a subcommand whose callback runs
// the command and stores its exit code.
#pragma once

#include <CLI/CLI.hpp>

namespace shoal::cli {

void add_merge_command(CLI::App& app);
void add_inspect_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_convert_command(CLI::App& app);
void add_search_command(CLI::App& app);
void add_evolve_command(CLI::App& app);

// The exit code the command that ran asked for (0 by default).
int exit_code();
void set_exit_code(int code);

}  // namespace shoal::cli
