// shoal: the command-line front end. Each subcommand lives in its own file and is a thin layer
// over the library: flags -> params struct -> library call -> exit code.
#include <cstdio>
#include <exception>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "shoal/error.h"

namespace shoal::cli {
namespace {
int g_exit_code = 0;
}  // namespace

int exit_code() {
  return g_exit_code;
}
void set_exit_code(int code) {
  g_exit_code = code;
}

}  // namespace shoal::cli

int main(int argc, char** argv) {
  CLI::App app{"shoal: make many models work as one"};
  app.require_subcommand(1);
  shoal::cli::add_merge_command(app);
  shoal::cli::add_inspect_command(app);
  shoal::cli::add_generate_command(app);
  shoal::cli::add_eval_command(app);
  shoal::cli::add_convert_command(app);
  shoal::cli::add_search_command(app);
  shoal::cli::add_evolve_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const shoal::Error& e) {
    std::fprintf(stderr, "shoal: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shoal: error: %s\n", e.what());
    return 1;
  }
  return shoal::cli::exit_code();
}
