// run_process: fork + execve with pipes for stdin/stdout/stderr, the child in its own process
// group so that a timeout kills everything it started. Everything the child does between fork and
// exec is async-signal-safe (the parent may have other threads holding locks): the program path,
// argv and environment are prepared before the fork.
#include "shoal/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>

#include "shoal/error.h"

extern char** environ;

namespace shoal {
namespace {

using Clock = std::chrono::steady_clock;

// How long the parent keeps draining pipes after it killed the group: a process that left the
// group (setsid) may still hold them, and the caller must not wait for it.
constexpr double kDrainAfterKillS = 1.0;
// Poll interval while waiting for a child whose pipes stay open, or for a cancel flag.
constexpr int kTickMs = 50;

void ignore_sigpipe_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction old {};
    if (sigaction(SIGPIPE, nullptr, &old) == 0 && old.sa_handler == SIG_DFL) {
      ::signal(SIGPIPE, SIG_IGN);
    }
  });
}

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    reset(o.release());
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// Both ends close on exec and are numbered 3 or more: if a caller runs with stdin, stdout or
// stderr closed, a pipe could otherwise get fd 0-2 and the child's dup2 onto 0-2 would clobber it.
bool make_pipe(Fd& read_end, Fd& write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return false;
  for (int& fd : fds) {
    if (fd > 2) continue;
    const int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
    ::close(fd);
    fd = moved;
  }
  read_end.reset(fds[0]);
  write_end.reset(fds[1]);
  return fds[0] >= 0 && fds[1] >= 0;
}

void set_nonblocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

std::string env_value(const std::vector<std::pair<std::string, std::string>>& extra,
                      const std::string& key) {
  for (const auto& [k, v] : extra) {
    if (k == key) return v;
  }
  const char* v = std::getenv(key.c_str());
  return v != nullptr ? v : "";
}

// The executable that argv[0] names: itself when it holds a '/', else the first match in PATH.
std::string resolve_program(const std::string& name, const std::string& path_var) {
  if (name.find('/') != std::string::npos) return name;
  size_t start = 0;
  while (start <= path_var.size()) {
    size_t end = path_var.find(':', start);
    if (end == std::string::npos) end = path_var.size();
    // An empty PATH entry means the current folder.
    const std::string dir = end > start ? path_var.substr(start, end - start) : std::string(".");
    const std::string candidate = dir + "/" + name;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    start = end + 1;
  }
  return {};
}

std::vector<std::string> build_env(const std::vector<std::pair<std::string, std::string>>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string entry = *e;
    const std::string key = entry.substr(0, entry.find('='));
    bool replaced = false;
    for (const auto& [k, v] : extra) replaced = replaced || k == key;
    if (!replaced) env.push_back(entry);
  }
  for (const auto& [k, v] : extra) env.push_back(k + "=" + v);
  return env;
}

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// The child between fork and exec: async-signal-safe calls only, then _exit on failure with
// errno written to the status pipe.
[[noreturn]] void exec_child(const char* program, char* const* argv, char* const* envp, int in,
                             int out, int err, int status, const char* dir, uint64_t mem_limit) {
  ::setpgid(0, 0);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  ::sigaction(SIGPIPE, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  if (::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0) goto fail;
  if (dir != nullptr && ::chdir(dir) != 0) goto fail;
  if (mem_limit > 0) {
    struct rlimit lim {};
    lim.rlim_cur = lim.rlim_max = mem_limit;
    if (::setrlimit(RLIMIT_AS, &lim) != 0) goto fail;
  }
  ::execve(program, argv, envp);
fail:
  const int e = errno;
  [[maybe_unused]] ssize_t n = ::write(status, &e, sizeof e);
  ::_exit(127);
}

// Appends what `fd` has to `dst` (up to `cap` bytes kept). Returns false at end of file.
bool drain(int fd, std::string& dst, size_t cap, bool& truncated) {
  char buf[65536];
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      const size_t keep = dst.size() < cap ? std::min(cap - dst.size(), static_cast<size_t>(n)) : 0;
      dst.append(buf, keep);
      if (keep < static_cast<size_t>(n)) truncated = true;
      continue;
    }
    if (n == 0) return false;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;  // other errors: treat as closed
  }
}

}  // namespace

std::vector<std::string> shell_argv(const std::string& command) {
  return {"/bin/sh", "-c", command};
}

std::string ProcessResult::describe() const {
  if (!started) return "did not start: " + error;
  std::string s;
  if (timed_out) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3g", seconds);
    s = std::string("timed out after ") + buf + " s (process group killed)";
  } else if (cancelled) {
    s = "cancelled (process group killed)";
  } else if (signal != 0) {
    s = "killed by signal " + std::to_string(signal) + " (" + ::strsignal(signal) + ")";
  } else {
    s = "exit status " + std::to_string(exit_code);
  }
  return s;
}

ProcessResult run_process(const ProcessOptions& options) {
  if (options.argv.empty()) throw ConfigError("run_process: the command is empty");
  ignore_sigpipe_once();
  ProcessResult result;
  const auto start = Clock::now();

  const std::string program =
      resolve_program(options.argv[0], env_value(options.extra_env, "PATH"));
  if (program.empty()) {
    result.error = options.argv[0] + ": command not found";
    return result;
  }
  std::vector<std::string> args = options.argv;
  std::vector<std::string> env = build_env(options.extra_env);
  const std::vector<char*> c_args = c_strings(args);
  const std::vector<char*> c_env = c_strings(env);
  const std::string dir = options.working_dir.string();

  Fd in_r, in_w, out_r, out_w, err_r, err_w, st_r, st_w;
  if (!make_pipe(in_r, in_w) || !make_pipe(out_r, out_w) || !make_pipe(err_r, err_w) ||
      !make_pipe(st_r, st_w)) {
    result.error = errno_message("pipe");
    return result;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    result.error = errno_message("fork");
    return result;
  }
  if (pid == 0) {
    exec_child(program.c_str(), c_args.data(), c_env.data(), in_r.get(), out_w.get(), err_w.get(),
               st_w.get(), dir.empty() ? nullptr : dir.c_str(), options.memory_limit_bytes);
  }
  ::setpgid(pid, pid);  // also done by the child; whichever runs first wins the race
  in_r.reset();
  out_w.reset();
  err_w.reset();
  st_w.reset();

  // The status pipe closes on a successful exec (O_CLOEXEC) or carries exec's errno.
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(st_r.get(), &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  if (n == sizeof child_errno) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    result.error = options.argv[0] + ": " + std::strerror(child_errno);
    return result;
  }
  result.started = true;

  set_nonblocking(in_w.get());
  set_nonblocking(out_r.get());
  set_nonblocking(err_r.get());
  size_t written = 0;
  if (options.stdin_data.empty()) in_w.reset();
  const bool has_deadline = options.timeout_s > 0;
  const auto deadline =
      start + std::chrono::duration_cast<Clock::duration>(
                  std::chrono::duration<double>(has_deadline ? options.timeout_s : 0));
  bool exited = false, killed = false;
  // Set once the program exited or was killed: from then on the pipes are drained for at most
  // kDrainAfterKillS.
  std::optional<Clock::time_point> draining_since;
  int status = 0;

  auto kill_group = [&] {
    ::kill(-pid, SIGKILL);
    killed = true;
    if (!draining_since) draining_since = Clock::now();
  };

  int idle_wait_ms = 1;
  while (true) {
    if (!exited) {
      // Seen without reaping (WNOWAIT), so that the group id cannot be reused before the kill.
      siginfo_t info{};
      if (::waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid) {
        // Whatever the program left running in its group goes with it (and lets pipes close).
        ::kill(-pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        exited = true;
        if (!draining_since) draining_since = Clock::now();
      }
    }
    if (exited && out_r.get() < 0 && err_r.get() < 0) break;
    const auto now = Clock::now();
    if (!killed && !exited && has_deadline && now >= deadline) {
      result.timed_out = true;
      kill_group();
    }
    if (!killed && !exited && options.cancel != nullptr && options.cancel->load()) {
      result.cancelled = true;
      kill_group();
    }
    if (draining_since &&
        std::chrono::duration<double>(now - *draining_since).count() > kDrainAfterKillS) {
      break;  // a process outside the group holds the pipes
    }

    pollfd fds[3];
    int nfds = 0;
    int in_idx = -1, out_idx = -1, err_idx = -1;
    if (in_w.get() >= 0) {
      in_idx = nfds;
      fds[nfds++] = {in_w.get(), POLLOUT, 0};
    }
    if (out_r.get() >= 0) {
      out_idx = nfds;
      fds[nfds++] = {out_r.get(), POLLIN, 0};
    }
    if (err_r.get() >= 0) {
      err_idx = nfds;
      fds[nfds++] = {err_r.get(), POLLIN, 0};
    }
    // With every pipe closed only the exit is left to see, and it usually follows at once:
    // wait 1, 2, 4, ... ms rather than a whole tick.
    int wait_ms = kTickMs;
    if (nfds == 0) {
      wait_ms = std::min(idle_wait_ms, kTickMs);
      idle_wait_ms *= 2;
    }
    if (has_deadline && !killed && !exited) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
      wait_ms = static_cast<int>(std::clamp<int64_t>(left, 0, wait_ms));
    }
    const int ready = ::poll(fds, nfds, wait_ms);
    if (ready < 0 && errno != EINTR) break;
    if (ready <= 0) continue;
    if (in_idx >= 0 && fds[in_idx].revents != 0) {
      while (written < options.stdin_data.size()) {
        const ssize_t w = ::write(in_w.get(), options.stdin_data.data() + written,
                                  options.stdin_data.size() - written);
        if (w > 0) {
          written += static_cast<size_t>(w);
        } else if (w < 0 && errno == EINTR) {
          continue;
        } else {
          if (w < 0 && errno != EAGAIN) written = options.stdin_data.size();  // EPIPE: gone
          break;
        }
      }
      if (written >= options.stdin_data.size()) in_w.reset();
    }
    if (out_idx >= 0 && fds[out_idx].revents != 0 &&
        !drain(out_r.get(), result.out, options.max_output_bytes, result.out_truncated)) {
      out_r.reset();
    }
    if (err_idx >= 0 && fds[err_idx].revents != 0 &&
        !drain(err_r.get(), result.err, options.max_output_bytes, result.err_truncated)) {
      err_r.reset();
    }
  }
  if (!exited) {
    kill_group();
    ::waitpid(pid, &status, 0);
  }
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

}  // namespace shoal
