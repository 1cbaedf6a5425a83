#include "shoal/subprocess.h"

#include <signal.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "core/test_support.h"
#include "shoal/error.h"

namespace shoal {
namespace {

ProcessResult sh(const std::string& command, double timeout_s = 10) {
  ProcessOptions o;
  o.argv = shell_argv(command);
  o.timeout_s = timeout_s;
  return run_process(o);
}

// Whether `pid` is gone (or a zombie waiting for init to reap it): /proc/<pid>/stat's state.
bool process_gone(int pid) {
  for (int i = 0; i < 100; ++i) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(stat, line)) return true;
    const size_t close = line.rfind(')');
    if (close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z') {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

TEST(Subprocess, PipesStdinThroughAndCollectsBothStreams) {
  // 3 MB each way: the parent must write and read at the same time or both sides block.
  std::string data(3 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>('a' + i % 26);
  ProcessOptions o;
  o.argv = {"cat"};
  o.stdin_data = data;
  o.max_output_bytes = 4 << 20;
  const ProcessResult r = run_process(o);
  ASSERT_TRUE(r.started) << r.error;
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.out, data);
  EXPECT_FALSE(r.out_truncated);

  const ProcessResult e = sh("echo out; echo err >&2; exit 3");
  EXPECT_EQ(e.exit_code, 3);
  EXPECT_FALSE(e.ok());
  EXPECT_EQ(e.out, "out\n");
  EXPECT_EQ(e.err, "err\n");
  EXPECT_EQ(e.describe(), "exit status 3");
}

TEST(Subprocess, TimeoutKillsTheWholeProcessGroup) {
  test::TempDir tmp;
  const auto pid_file = tmp / "pid";
  // The background sleep keeps stdout open: only killing the group ends the wait.
  const ProcessResult r = sh("sleep 30 & echo $! > '" + pid_file.string() + "'; wait", 0.3);
  ASSERT_TRUE(r.started);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_LT(r.seconds, 3.0);
  EXPECT_NE(r.describe().find("timed out"), std::string::npos) << r.describe();
  std::ifstream in(pid_file);
  int pid = 0;
  ASSERT_TRUE(in >> pid);
  EXPECT_TRUE(process_gone(pid)) << "the background child " << pid << " survived";
}

TEST(Subprocess, ChildrenLeftBehindAfterExitAreKilled) {
  test::TempDir tmp;
  const auto pid_file = tmp / "pid";
  const ProcessResult r = sh("sleep 30 & echo $! > '" + pid_file.string() + "'; echo done", 20);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.out, "done\n");
  EXPECT_LT(r.seconds, 3.0);
  std::ifstream in(pid_file);
  int pid = 0;
  ASSERT_TRUE(in >> pid);
  EXPECT_TRUE(process_gone(pid));
}

TEST(Subprocess, MemoryLimitStopsAGreedyProgram) {
  ProcessOptions o;
  o.argv = {"/usr/bin/python3", "-c", "x = bytearray(1 << 30); print('allocated')"};
  o.memory_limit_bytes = 256ull << 20;
  o.timeout_s = 30;
  const ProcessResult r = run_process(o);
  ASSERT_TRUE(r.started) << r.error;
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("MemoryError"), std::string::npos) << r.err;

  o.memory_limit_bytes = 0;  // the same program without the limit allocates
  o.argv = {"/usr/bin/python3", "-c", "x = bytearray(1 << 24); print('allocated')"};
  EXPECT_EQ(run_process(o).out, "allocated\n");
}

TEST(Subprocess, ReportsProgramsThatCannotStart) {
  ProcessOptions o;
  o.argv = {"shoal-no-such-program-42"};
  ProcessResult r = run_process(o);
  EXPECT_FALSE(r.started);
  EXPECT_EQ(r.error, "shoal-no-such-program-42: command not found");
  EXPECT_EQ(r.describe(), "did not start: shoal-no-such-program-42: command not found");

  test::TempDir tmp;
  const auto script = tmp.write("not_executable.sh", "echo hi\n");
  o.argv = {script.string()};
  r = run_process(o);
  EXPECT_FALSE(r.started);
  EXPECT_NE(r.error.find("Permission denied"), std::string::npos) << r.error;

  EXPECT_THROW(run_process(ProcessOptions{}), ConfigError);
}

TEST(Subprocess, CapsTheOutputKept) {
  ProcessOptions o;
  o.argv = shell_argv("head -c 3000000 /dev/zero; echo tail >&2");
  o.max_output_bytes = 1000;
  const ProcessResult r = run_process(o);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out.size(), 1000u);
  EXPECT_TRUE(r.out_truncated);
  EXPECT_EQ(r.err, "tail\n");
  EXPECT_FALSE(r.err_truncated);
}

TEST(Subprocess, AProgramThatIgnoresItsStdinDoesNotHurtTheParent) {
  ProcessOptions o;
  o.argv = {"true"};
  o.stdin_data = std::string(8 << 20, 'x');  // more than a pipe holds: the write hits EPIPE
  const ProcessResult r = run_process(o);
  EXPECT_EQ(r.exit_code, 0);
}

TEST(Subprocess, WorkingDirectoryAndEnvironment) {
  test::TempDir tmp;
  ProcessOptions o;
  o.argv = shell_argv("pwd; echo \"$SHOAL_SUBPROCESS_TEST\"");
  o.working_dir = tmp.path();
  o.extra_env = {{"SHOAL_SUBPROCESS_TEST", "forty two"}};
  const ProcessResult r = run_process(o);
  EXPECT_EQ(r.out, std::filesystem::canonical(tmp.path()).string() + "\nforty two\n");
}

TEST(Subprocess, CancelFlagKillsTheProgram) {
  std::atomic<bool> cancel{false};
  ProcessOptions o;
  o.argv = {"sleep", "30"};
  o.cancel = &cancel;
  std::thread setter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    cancel.store(true);
  });
  const ProcessResult r = run_process(o);
  setter.join();
  EXPECT_TRUE(r.cancelled);
  EXPECT_FALSE(r.timed_out);
  EXPECT_LT(r.seconds, 3.0);
}

TEST(Subprocess, ManyThreadsAtOnce) {
  std::vector<std::thread> threads;
  std::vector<std::string> outs(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([i, &outs] {
      ProcessOptions o;
      o.argv = {"cat"};
      o.stdin_data = std::string(100000 + i, static_cast<char>('A' + i));
      outs[i] = run_process(o).out;
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(outs[i], std::string(100000 + i, static_cast<char>('A' + i)));
  }
}

}  // namespace
}  // namespace shoal
