// run_search: one coordinator thread owns the Search (ask / tell / cancel are not thread-safe)
// and `concurrency` worker threads run the LLM calls and the scorer. The coordinator keeps the
// workers busy (ask(k) for the free slots, trials still pending after a resume first), tells
// results as they come back, and saves tree.json after each batch of results, so an interrupted
// or failed run loses nothing it already told.
//
// Stops: a budget (calls, cost, wall time), Ctrl-C, a fatal backend error (401/403/404) or a
// model failing kMaxConsecutiveFailures calls in a row. Ctrl-C and the wall-time budget cancel the
// calls in flight (their trials stay pending and run again on --resume); the others let them end.
#include <algorithm>
#include <condition_variable>
#include <deque>
#include <optional>
#include <thread>

#include "eval/template.h"
#include "search/run_backends.h"
#include "search/search_run_output.h"
#include "shoal/error.h"
#include "shoal/population.h"
#include "shoal/rng.h"
#include "shoal/search.h"
#include "shoal/search_run.h"

namespace shoal::search {
namespace {

constexpr int kMaxConsecutiveFailures = 5;
constexpr int kWarningsPerKind = 3;  // then the rest are only in calls.jsonl
constexpr uint64_t kCallStream = hash_name("shoal-search-call");

struct Job {
  Trial trial;
  LlmRequest request;
};

struct Outcome {
  Trial trial;
  bool aborted = false;  // cancelled by a stop: the trial stays pending
  std::optional<LlmResponse> response;
  std::string error;
  LlmErrorKind kind = LlmErrorKind::kFailed;
  int http_status = 0;
  ScoreResult score;
};

class Runner {
 public:
  Runner(const SearchTask& task, const SearchRunOptions& options, std::vector<LlmBackend*> backends)
      : task_(task),
        options_(options),
        backends_(std::move(backends)),
        status_(options.log_mode),
        consecutive_failures_(backends_.size(), 0) {}

  ~Runner() {
    abort_.store(true);
    stop_workers();
  }

  SearchRunSummary run() {
    open();
    start_ = std::chrono::steady_clock::now();
    save("running");
    for (int i = 0; i < task_.concurrency; ++i) workers_.emplace_back([this] { work(); });
    while (true) {
      check_stops();
      if (!stopping_) fill();
      if (in_flight_ == 0 && stopping_) break;
      std::deque<Outcome> batch;
      {
        std::unique_lock lock(mutex_);
        done_cv_.wait_for(lock, std::chrono::milliseconds(100), [&] { return !done_.empty(); });
        batch.swap(done_);
      }
      for (Outcome& o : batch) handle(o);
      if (!batch.empty()) unsaved_ = true;
      if (unsaved_ && save_due()) save("running");
      if (status_.live()) status_.update(status_text());
    }
    stop_workers();
    const std::string final_status =
        summary_.interrupted ? "interrupted"
                             : (summary_.fatal ? "stopped: " : "finished: ") + summary_.stop_reason;
    save(final_status);
    write_best(options_.out_dir, *search_, backends_, task_.best);
    write_file_atomic(
        options_.out_dir / "tree.html",
        search_report_html(tree_json(task_, backends_, *search_, totals_, final_status)));
    summary_.generations = search_->n_generations();
    summary_.calls = totals_.calls;
    summary_.failed_calls = totals_.failed_calls;
    summary_.scorer_failures = totals_.scorer_failures;
    summary_.cost_usd = totals_.cost_usd;
    const auto top = search_->top_k(1);
    if (!top.empty()) {
      summary_.best_node = top[0];
      summary_.best_score = search_->node(top[0]).score;
    }
    status_.finish(status_text() + " -> " + final_status);
    return summary_;
  }

 private:
  std::filesystem::path tree_path() const { return options_.out_dir / "tree.json"; }

  // A new search, or the one in tree.json (which must belong to this task).
  void open() {
    const bool exists = std::filesystem::exists(tree_path());
    if (options_.resume) {
      if (!exists) {
        throw ConfigError(tree_path().string() + " does not exist: there is no search to resume");
      }
      resume();
    } else {
      if (exists) {
        throw ConfigError(options_.out_dir.string() +
                          " already holds a search (tree.json): pass --resume to continue it, or "
                          "choose another --out");
      }
      std::filesystem::create_directories(options_.out_dir);
      search_ = make_search({task_.algorithm, task_.algorithm_params,
                             static_cast<int>(backends_.size()), task_.seed});
    }
    totals_.runs += 1;
    log_.emplace(options_.out_dir / "calls.jsonl", options_.resume);
  }

  void resume() {
    SavedRun saved = load_tree(tree_path(), task_);
    search_ = std::move(saved.search);
    totals_ = saved.totals;
    for (const Trial& t : search_->pending()) rerun_.push_back(t);
  }

  double elapsed() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

  void stop(std::string reason, bool fatal = false) {
    if (stopping_) return;
    stopping_ = true;
    summary_.stop_reason = std::move(reason);
    summary_.fatal = fatal;
  }

  // Ctrl-C and the wall-time budget also cancel what runs; they count even while the run is
  // already stopping for another reason and waits for its last calls.
  void check_stops() {
    if (options_.interrupt != nullptr && options_.interrupt->load() && !summary_.interrupted) {
      summary_.interrupted = true;
      abort_.store(true);
      stop("interrupted");
    }
    if (task_.budget.wall_s > 0 && elapsed() >= task_.budget.wall_s && !abort_.load()) {
      abort_.store(true);
      stop("wall-time budget");
    }
    if (stopping_) return;
    if (task_.budget.cost_usd > 0 && totals_.cost_usd >= task_.budget.cost_usd) {
      return stop("cost budget");
    }
    if (task_.budget.calls > 0 && totals_.calls >= task_.budget.calls) stop("calls budget");
  }

  // Gives every free worker a trial: pending ones from tree.json first, then new asks.
  void fill() {
    int64_t k = task_.concurrency - in_flight_;
    if (task_.budget.calls > 0) {
      k = std::min(k, task_.budget.calls - totals_.calls - in_flight_);
    }
    while (k > 0 && !rerun_.empty()) {
      submit(rerun_.front());
      rerun_.pop_front();
      --k;
    }
    if (k > 0) {
      for (const Trial& t : search_->ask(static_cast<int>(k))) submit(t);
    }
  }

  void submit(const Trial& trial) {
    Job job{trial, {}};
    job.request.seed =
        CounterRng(task_.seed).stream(kCallStream).bits(static_cast<uint64_t>(trial.id));
    job.request.cancel = &abort_;
    if (!task_.system.empty()) job.request.messages.push_back({"system", task_.system});
    job.request.messages.push_back({"user", prompt(trial)});
    {
      std::lock_guard lock(mutex_);
      jobs_.push_back(std::move(job));
    }
    ++in_flight_;
    jobs_cv_.notify_one();
  }

  // The problem for a first answer; the refinement template filled from the parent otherwise.
  std::string prompt(const Trial& trial) const {
    if (trial.parent == kRootNode) return task_.problem;
    const SearchNode& parent = search_->node(trial.parent);
    std::string feedback;
    if (parent.meta.is_object() && parent.meta.contains("feedback") &&
        parent.meta["feedback"].is_string()) {
      feedback = parent.meta["feedback"].get<std::string>();
    }
    const nlohmann::json fields = {{"problem", task_.problem},
                                   {"answer", parent.state},
                                   {"feedback", feedback},
                                   {"score", parent.score}};
    std::string error;
    const auto tmpl = eval::Template::parse(task_.refine, &error);
    SHOAL_ASSERT(tmpl.has_value());  // checked when the task was loaded
    return tmpl->render(fields, task_.file.string(), "refine");
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
      Outcome o = run_job(job);
      {
        std::lock_guard lock(mutex_);
        done_.push_back(std::move(o));
      }
      done_cv_.notify_one();
    }
  }

  Outcome run_job(const Job& job) {
    Outcome o;
    o.trial = job.trial;
    LlmBackend& backend = *backends_.at(static_cast<size_t>(job.trial.action));
    try {
      o.response = backend.complete(job.request);
    } catch (const LlmError& e) {
      o.aborted = e.kind() == LlmErrorKind::kCancelled;
      o.error = e.what();
      o.kind = e.kind();
      o.http_status = e.http_status();
      return o;
    } catch (const std::exception& e) {
      o.error = "backend '" + backend.name() + "': " + e.what();
      return o;
    }
    try {
      o.score = run_scorer(task_.scorer, o.response->text,
                           {{"SHOAL_SEARCH_MODEL", backend.name()},
                            {"SHOAL_SEARCH_TRIAL", std::to_string(job.trial.id)}},
                           &abort_);
      o.aborted = o.score.cancelled;
    } catch (const std::exception& e) {
      o.score = ScoreResult{};
      o.score.feedback = std::string("scorer failed: ") + e.what();
    }
    return o;
  }

  void handle(const Outcome& o) {
    --in_flight_;
    const size_t action = static_cast<size_t>(o.trial.action);
    const std::string& model = backends_[action]->name();
    nlohmann::json line = {{"run", totals_.runs},      {"t", elapsed()},  {"trial", o.trial.id},
                           {"parent", o.trial.parent}, {"model", model},  {"node", nullptr},
                           {"score", nullptr},         {"error", nullptr}};
    if (o.response) {
      // A reply whose scoring was cut off by a stop costs its tokens, but it is not a call of
      // the budget: its trial stays pending and runs again on --resume.
      const LlmResponse& r = *o.response;
      if (!o.aborted) totals_.calls += 1;
      totals_.input_tokens += r.usage.input_tokens;
      totals_.output_tokens += r.usage.output_tokens;
      totals_.cost_usd += r.usage.cost_usd;
      line.update({{"input_tokens", r.usage.input_tokens},
                   {"output_tokens", r.usage.output_tokens},
                   {"cost_usd", r.usage.cost_usd},
                   {"latency_s", r.latency_s},
                   {"attempts", r.attempts},
                   {"scorer_s", o.score.seconds}});
    }
    if (o.aborted) {
      line["status"] = "aborted";  // the trial stays pending: --resume runs it again
    } else if (!o.response) {
      totals_.calls += 1;
      totals_.failed_calls += 1;
      search_->cancel(o.trial);
      line["status"] = "failed";
      line["error"] = o.error;
      if (o.http_status != 0) line["http_status"] = o.http_status;
      if (warned_calls_++ < kWarningsPerKind) {
        status_.warn("trial " + std::to_string(o.trial.id) + " (" + model + ") failed: " + o.error +
                     (warned_calls_ == kWarningsPerKind ? " (further failures: calls.jsonl)" : ""));
      }
      if (o.kind == LlmErrorKind::kFatal) {
        stop(o.error, true);
      } else if (++consecutive_failures_[action] >= kMaxConsecutiveFailures) {
        stop("model '" + model + "' failed " + std::to_string(kMaxConsecutiveFailures) +
                 " calls in a row; the last: " + o.error,
             true);
      }
    } else {
      consecutive_failures_[action] = 0;
      const LlmResponse& r = *o.response;
      if (!o.score.ok) {
        totals_.scorer_failures += 1;
        if (warned_scorer_++ < kWarningsPerKind) {
          status_.warn("trial " + std::to_string(o.trial.id) + ": " + o.score.feedback +
                       (warned_scorer_ == kWarningsPerKind ? " (further ones: calls.jsonl)" : ""));
        }
      }
      const nlohmann::json meta = {{"model", model},
                                   {"feedback", o.score.feedback},
                                   {"scorer_ok", o.score.ok},
                                   {"input_tokens", r.usage.input_tokens},
                                   {"output_tokens", r.usage.output_tokens},
                                   {"cost_usd", r.usage.cost_usd},
                                   {"latency_s", r.latency_s},
                                   {"scorer_s", o.score.seconds},
                                   {"finish_reason", r.finish_reason}};
      const int64_t node = search_->tell(o.trial, r.text, o.score.score, meta);
      line["status"] = "ok";
      line["node"] = node;
      line["score"] = o.score.score;
      line["scorer_ok"] = o.score.ok;
      if (!o.score.ok) line["error"] = o.score.feedback;
    }
    log_->write(line);
    line["event"] = "call";
    status_.event(std::move(line));
  }

  // After every batch of results, unless the tree has grown so large that saving would take
  // more than a tenth of the run's time: then at most once per 10 x the last save's duration
  // (a crash may lose that much; a stop always saves).
  bool save_due() const {
    return std::chrono::steady_clock::now() - last_save_end_ >= 10 * last_save_duration_;
  }

  void save(const std::string& status) {
    const auto begin = std::chrono::steady_clock::now();
    RunTotals t = totals_;
    t.wall_s += elapsed();
    write_file_atomic(tree_path(),
                      tree_json(task_, backends_, *search_, t, status)
                              .dump(1, ' ', false, nlohmann::json::error_handler_t::replace) +
                          "\n");
    unsaved_ = false;
    last_save_end_ = std::chrono::steady_clock::now();
    last_save_duration_ = last_save_end_ - begin;
  }

  std::string status_text() const {
    char buf[256];
    const auto top = search_->top_k(1);
    std::string best = "-";
    if (!top.empty()) {
      const SearchNode& n = search_->node(top[0]);
      std::snprintf(buf, sizeof buf, "%.3f (%s)", n.score, backends_[n.action]->name().c_str());
      best = buf;
    }
    const std::string calls = task_.budget.calls > 0 ? std::to_string(totals_.calls) + "/" +
                                                           std::to_string(task_.budget.calls)
                                                     : std::to_string(totals_.calls);
    std::snprintf(buf, sizeof buf,
                  "search: %s calls, %lld answers, best %s, $%.4f, %lld failed, %.0f s",
                  calls.c_str(), static_cast<long long>(search_->n_generations()), best.c_str(),
                  totals_.cost_usd, static_cast<long long>(totals_.failed_calls), elapsed());
    return buf;
  }

  void stop_workers() {
    {
      std::lock_guard lock(mutex_);
      closing_ = true;
      jobs_.clear();  // never started: those trials stay pending
    }
    jobs_cv_.notify_all();
    for (std::thread& t : workers_) t.join();
    workers_.clear();
  }

  const SearchTask& task_;
  const SearchRunOptions& options_;
  std::vector<LlmBackend*> backends_;
  StatusLine status_;
  std::unique_ptr<Search> search_;
  RunTotals totals_;
  std::optional<CallLog> log_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();

  std::atomic<bool> abort_{false};  // cancels the calls and scorers in flight
  std::mutex mutex_;
  std::condition_variable jobs_cv_, done_cv_;
  std::deque<Job> jobs_;
  std::deque<Outcome> done_;
  bool closing_ = false;
  std::vector<std::thread> workers_;

  // Coordinator only.
  int64_t in_flight_ = 0;
  std::deque<Trial> rerun_;
  std::vector<int> consecutive_failures_;
  int warned_calls_ = 0;
  int warned_scorer_ = 0;
  bool stopping_ = false;
  bool unsaved_ = false;  // results told since the last save
  std::chrono::steady_clock::time_point last_save_end_{};
  std::chrono::steady_clock::duration last_save_duration_{};
  SearchRunSummary summary_;
};

}  // namespace
}  // namespace shoal::search

namespace shoal {

SearchRunSummary run_search(const SearchTask& task, const SearchRunOptions& options) {
  if (task.algorithm == "population") return run_population(task, options);
  std::vector<std::unique_ptr<LlmBackend>> owned;
  std::vector<LlmBackend*> backends = search::run_backends(task, options, owned, "run_search");
  search::Runner runner(task, options, std::move(backends));
  return runner.run();
}

}  // namespace shoal
