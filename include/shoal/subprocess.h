// Running another program and collecting what it prints, with hard limits: a wall-clock timeout
// that kills the program and everything it started (it runs in its own process group), a cap on
// its address space (RLIMIT_AS), and caps on the bytes kept from stdout and stderr. Used by the
// search scorers and by anything else that measures candidates with a user's command.
// Implemented in src/core/subprocess.cpp (fork + exec; no shell unless the caller asks for one).
//
// Thread safety: run_process may be called from many threads at once. The first call sets
// SIGPIPE to be ignored in this process if it had the default action (a child that exits without
// reading its stdin must not kill the parent); children get the default action back.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace shoal {

struct ProcessOptions {
  // Program and arguments; argv[0] is looked up in PATH when it holds no '/'.
  std::vector<std::string> argv;
  std::string stdin_data;             // written to the program's stdin, which is then closed
  double timeout_s = 0;               // wall clock; <= 0: no limit
  uint64_t memory_limit_bytes = 0;    // RLIMIT_AS of the program; 0: inherited
  std::filesystem::path working_dir;  // empty: the caller's
  std::vector<std::pair<std::string, std::string>> extra_env;  // added to (or replacing in) ours
  size_t max_output_bytes = 1 << 20;  // kept per stream; the rest is read and dropped
  // Stops the wait early (the program is killed as on a timeout) when it becomes true; polled
  // every 50 ms. May be null.
  const std::atomic<bool>* cancel = nullptr;
};

struct ProcessResult {
  bool started = false;    // false: fork or exec failed (see error)
  std::string error;       // why it did not start, e.g. "python9: No such file or directory"
  int exit_code = -1;      // the exit status when it exited normally, else -1
  int signal = 0;          // the signal that ended it, else 0
  bool timed_out = false;  // killed because timeout_s passed
  bool cancelled = false;  // killed because *cancel became true
  std::string out;         // stdout (up to max_output_bytes)
  std::string err;         // stderr (up to max_output_bytes)
  bool out_truncated = false;
  bool err_truncated = false;
  double seconds = 0;  // wall time from start to the end of the wait

  bool ok() const { return started && exit_code == 0; }
  // One line for logs and messages: "exit status 1", "killed by signal 9 (timed out after 2 s)".
  std::string describe() const;
};

// Runs the program to completion (or its timeout). Throws ConfigError for an empty argv;
// everything that goes wrong with the program itself is reported in the result, never thrown.
ProcessResult run_process(const ProcessOptions& options);

// argv that runs `command` with /bin/sh -c (for user commands written as one string).
std::vector<std::string> shell_argv(const std::string& command);

}  // namespace shoal
