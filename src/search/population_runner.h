// The population run's coordinator (internal to the search layer; used by run_population only).
// One coordinator thread owns the population state and the database; `concurrency` worker
// threads run LLM calls and evaluations. A proposal moves through call -> (patch / novelty check,
// in the coordinator) -> [retry call] -> evaluation -> insert, and holds one job at a time; up to
// `concurrency` proposals are in flight. Every result is committed to the database in one
// transaction, so a stop at any point leaves it consistent. The setup and the loop are in
// population_run.cpp, the handling of results in population_steps.cpp.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "search/population_diff.h"
#include "search/population_eval.h"
#include "search/population_prompt.h"
#include "search/population_run.h"
#include "search/search_run_output.h"
#include "shoal/error.h"
#include "shoal/rng.h"

namespace shoal::search {

constexpr int kMaxConsecutiveFailures = 5;
constexpr int kWarningsPerKind = 3;
constexpr uint64_t kProposalStream = hash_name("shoal-population-proposal");
constexpr uint64_t kCallStream = hash_name("shoal-population-call");

struct Proposal {
  ProposalRow row;
  size_t model = 0;
  std::vector<ChatMessage> messages;
  int attempt = 0;
  std::string candidate;  // the code being evaluated
};

struct Job {
  int64_t proposal = 0;
  bool eval = false;
  size_t model = 0;
  LlmRequest request;
  std::string code;
};

struct Outcome {
  int64_t proposal = 0;
  bool eval = false;
  bool aborted = false;
  std::optional<LlmResponse> response;
  std::string error;
  LlmErrorKind kind = LlmErrorKind::kFailed;
  int http_status = 0;
  ProgramEvaluation evaluation;
};

class PopulationRunner {
 public:
  PopulationRunner(const SearchTask& task, const SearchRunOptions& options,
                   const PopulationHooks& hooks, std::vector<LlmBackend*> backends)
      : task_(task),
        options_(options),
        hooks_(hooks),
        params_(parse_population_params(task.algorithm_params, task.file.parent_path())),
        backends_(std::move(backends)),
        status_(options.log_mode),
        state_(params_, backends_.size()),
        failures_(backends_.size(), 0) {
    for (const auto* b : backends_) models_.push_back(b->name());
    eval_.scorer = task.scorer;
    eval_.cascade = params_.cascade;
    eval_.file_name = params_.file_name;
    eval_.task_dir = task.file.parent_path().empty() ? "." : task.file.parent_path();
    eval_.max_feedback_chars = static_cast<size_t>(params_.max_feedback_chars);
  }

  ~PopulationRunner() {
    abort_.store(true);
    stop_workers();
  }

  SearchRunSummary run();

 private:
  void open();

  double elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

  void stop(std::string reason, bool fatal = false) {
    if (stopping_) return;
    stopping_ = true;
    summary_.stop_reason = std::move(reason);
    summary_.fatal = fatal;
  }

  // From the watcher thread of seed_initial: only sets the abort flag (check_stops, on the
  // coordinator, then records the reason).
  void check_interrupt_only() {
    const bool interrupted = options_.interrupt != nullptr && options_.interrupt->load();
    const bool late = task_.budget.wall_s > 0 && elapsed() >= task_.budget.wall_s;
    if (interrupted || late) abort_.store(true);
  }

  void check_stops() {
    if (options_.interrupt != nullptr && options_.interrupt->load() && !summary_.interrupted) {
      summary_.interrupted = true;
      abort_.store(true);
      stop("interrupted");
    }
    if (task_.budget.wall_s > 0 && elapsed() >= task_.budget.wall_s) {
      abort_.store(true);
      stop("wall-time budget");  // no-op when already stopping for another reason
    }
    if (stopping_) return;
    if (task_.budget.cost_usd > 0 && totals_.cost_usd >= task_.budget.cost_usd) {
      stop("cost budget");
    }
  }

  // Another call may start: the calls budget counts the calls made and those in flight.
  bool can_start() const {
    if (stopping_) return false;
    if (task_.budget.cost_usd > 0 && totals_.cost_usd >= task_.budget.cost_usd) return false;
    return task_.budget.calls == 0 || totals_.calls + calls_in_flight_ < task_.budget.calls;
  }

  // Another proposal may start: the evaluation budget counts the evaluated proposals
  // (generation_) and the proposals in flight (each evaluates at most one).
  bool can_propose() const {
    return can_start() &&
           (params_.max_evaluations == 0 ||
            generation_ + static_cast<int64_t>(active_.size()) < params_.max_evaluations);
  }

  // The initial program, evaluated once and placed on every island (copies after the first).
  void seed_initial();

  ProgramEvaluation evaluate(const std::string& code,
                             const std::vector<std::pair<std::string, std::string>>& env) {
    if (hooks_.evaluator) return hooks_.evaluator(code);
    return evaluate_program(eval_, code, env, &abort_);
  }

  Program program_from(const ProgramEvaluation& e, const std::string& code) const {
    Program p;
    p.code = code;
    p.score = e.score;
    p.correct = e.ok && e.correct;
    p.eval_ok = e.ok;
    p.metrics = e.metrics;
    p.feedback = e.feedback;
    p.out_tail = e.out_tail;
    p.err_tail = e.err_tail;
    p.run = run_;
    p.created = static_cast<double>(std::time(nullptr));
    p.eval_s = e.seconds;
    return p;
  }

  // Adds to the state and the database (inside the caller's transaction).
  void insert(Program p) {
    const int island = p.island;
    const InsertOutcome out = state_.add(std::move(p));
    const Program& added = state_.program(static_cast<int64_t>(state_.size()));
    db_->insert_program(added);
    if (out.placed) db_->set_elite(island, out.cell, added.id);
  }

  void fill() {
    while (static_cast<int>(active_.size()) < task_.concurrency && can_propose()) start_proposal();
  }

  void start_proposal();

  void submit_call(Proposal& p) {
    Job job;
    job.proposal = p.row.id;
    job.model = p.model;
    job.request.messages = p.messages;
    job.request.seed = CounterRng(task_.seed)
                           .stream(kCallStream)
                           .bits(static_cast<uint64_t>(p.row.id) * 64 + p.attempt);
    job.request.cancel = &abort_;
    ++calls_in_flight_;
    push(std::move(job));
  }

  void push(Job job) {
    {
      std::lock_guard lock(mutex_);
      jobs_.push_back(std::move(job));
    }
    jobs_cv_.notify_one();
  }

  void work() {
    while (true) {
      Job job;
      {
        std::unique_lock lock(mutex_);
        jobs_cv_.wait(lock, [&] { return closing_ || !jobs_.empty(); });
        if (jobs_.empty()) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      Outcome o = job.eval ? run_eval(job) : run_call(job);
      {
        std::lock_guard lock(mutex_);
        done_.push_back(std::move(o));
      }
      done_cv_.notify_one();
    }
  }

  Outcome run_call(const Job& job) {
    Outcome o;
    o.proposal = job.proposal;
    LlmBackend* backend = backends_.at(job.model);
    try {
      o.response = backend->complete(job.request);
    } catch (const LlmError& e) {
      o.aborted = e.kind() == LlmErrorKind::kCancelled;
      o.error = e.what();
      o.kind = e.kind();
      o.http_status = e.http_status();
    } catch (const std::exception& e) {
      o.error = "backend '" + backend->name() + "': " + e.what();
    }
    return o;
  }

  Outcome run_eval(const Job& job) {
    Outcome o;
    o.proposal = job.proposal;
    o.eval = true;
    try {
      o.evaluation = evaluate(job.code, {{"SHOAL_SEARCH_PROPOSAL", std::to_string(job.proposal)}});
    } catch (const std::exception& e) {
      o.evaluation = ProgramEvaluation{};
      o.evaluation.feedback = std::string("evaluator failed: ") + e.what();
    }
    o.aborted = o.evaluation.cancelled;
    return o;
  }

  void handle_call(const Outcome& o);
  void handle_eval(const Outcome& o);
  void end_proposal(Proposal& p, const std::string& outcome, const std::string& error,
                    double reward);
  void migrate(int64_t trigger);
  SearchRunSummary finish();
  std::string status_text() const;

  void stop_workers() {
    {
      std::lock_guard lock(mutex_);
      closing_ = true;
      jobs_.clear();
    }
    jobs_cv_.notify_all();
    for (std::thread& t : workers_) t.join();
    workers_.clear();
  }

 private:
  const SearchTask& task_;
  const SearchRunOptions& options_;
  const PopulationHooks& hooks_;
  PopulationParams params_;
  std::vector<LlmBackend*> backends_;
  std::vector<std::string> models_;
  StatusLine status_;
  PopulationState state_;
  EvaluatorOptions eval_;
  std::optional<ProgramDb> db_;
  std::optional<CallLog> log_;
  DbTotals totals_;
  int64_t run_ = 0;
  int64_t next_proposal_ = 1;
  int64_t generation_ = 0;  // programs evaluated for proposals, all runs (= their generation)
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();

  std::atomic<bool> abort_{false};
  std::mutex mutex_;
  std::condition_variable jobs_cv_, done_cv_;
  std::deque<Job> jobs_;
  std::deque<Outcome> done_;
  bool closing_ = false;
  std::vector<std::thread> workers_;

  // Coordinator only.
  std::map<int64_t, Proposal> active_;
  int64_t calls_in_flight_ = 0;
  std::vector<int> failures_;
  int warned_patch_ = 0, warned_eval_ = 0, warned_calls_ = 0, warned_novelty_ = 0;
  bool stopping_ = false;
  SearchRunSummary summary_;
};

}  // namespace shoal::search
