// run_population and the coordinator's setup and loop (population_runner.h): opening or
// resuming the database, the initial program, starting proposals, the main loop.
#include "search/population_runner.h"
#include "search/run_backends.h"

namespace shoal::search {

SearchRunSummary PopulationRunner::run() {
  open();
  start_ = std::chrono::steady_clock::now();
  for (int i = 0; i < task_.concurrency; ++i) workers_.emplace_back([this] { work(); });
  if (state_.size() == 0 && !params_.initial.empty()) seed_initial();
  while (true) {
    check_stops();
    if (!stopping_) fill();
    if (active_.empty() && (stopping_ || !can_propose())) {
      if (!stopping_) stop(can_start() ? "evaluations budget" : "calls budget");
      break;
    }
    std::deque<Outcome> batch;
    {
      std::unique_lock lock(mutex_);
      done_cv_.wait_for(lock, std::chrono::milliseconds(100), [&] { return !done_.empty(); });
      batch.swap(done_);
    }
    for (Outcome& o : batch) o.eval ? handle_eval(o) : handle_call(o);
    if (status_.live()) status_.update(status_text());
  }
  stop_workers();
  return finish();
}

void PopulationRunner::open() {
  const std::filesystem::path db_path = options_.out_dir / "population.db";
  const nlohmann::json meta = population_meta(task_, params_);
  const bool exists = std::filesystem::exists(db_path);
  if (options_.resume) {
    if (!exists) {
      throw ConfigError(db_path.string() + " does not exist: there is no search to resume");
    }
    db_.emplace(ProgramDb::open(db_path));
    check_meta(db_.value().meta(), meta, db_path);
    state_ = rebuild_state(*db_, params_, models_);
  } else {
    if (exists || std::filesystem::exists(options_.out_dir / "tree.json")) {
      throw ConfigError(options_.out_dir.string() +
                        " already holds a search: pass --resume to continue it, or choose "
                        "another --out");
    }
    std::filesystem::create_directories(options_.out_dir);
    db_.emplace(ProgramDb::create(db_path, meta));
  }
  next_proposal_ = db_->next_proposal();
  for (const Program& p : state_.programs()) generation_ = std::max(generation_, p.generation);
  run_ = db_->begin_run(static_cast<double>(std::time(nullptr)));
  totals_ = db_->totals();
  eval_.temp_root = std::filesystem::absolute(options_.out_dir / "tmp");
  log_.emplace(options_.out_dir / "calls.jsonl", options_.resume);
}

void PopulationRunner::seed_initial() {
  std::ifstream in(params_.initial, std::ios::binary);
  if (!in) throw IoError(errno_message("cannot read " + params_.initial.string()));
  const std::string code((std::istreambuf_iterator<char>(in)), {});
  // Ctrl-C or the wall-time budget must also cut this first evaluation short.
  std::atomic<bool> evaluating{true};
  std::thread watcher([&] {
    while (evaluating.load()) {
      check_interrupt_only();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  ProgramEvaluation e;
  try {
    e = evaluate(code, {{"SHOAL_SEARCH_PROPOSAL", "0"}});
  } catch (...) {
    evaluating.store(false);
    watcher.join();
    throw;
  }
  evaluating.store(false);
  watcher.join();
  if (e.cancelled || abort_.load()) return;
  db_->begin();
  for (int island = 0; island < params_.islands; ++island) {
    Program p = program_from(e, code);
    p.id = static_cast<int64_t>(state_.size()) + 1;
    p.island = island;
    p.op = "initial";
    p.migrated_from = island == 0 ? -1 : 1;
    insert(std::move(p));
  }
  db_->set_archive(state_.archive());
  db_->commit();
  totals_ = db_->totals();
  if (!e.ok) status_.warn("the initial program's evaluation failed: " + e.feedback);
}

void PopulationRunner::start_proposal() {
  Proposal prop;
  ProposalRow& r = prop.row;
  r.id = next_proposal_++;
  r.run = run_;
  r.island = static_cast<int>(r.id % params_.islands);
  const CounterRng rng = CounterRng(task_.seed).stream(kProposalStream).stream(r.id);
  uint64_t counter = 0;
  const std::vector<int64_t> elites = state_.elites(r.island);
  if (state_.members(r.island).empty()) {
    r.op = "new";
  } else if (elites.empty()) {
    r.op = "fix";
    r.parent = state_.fix_parent(r.island);
  } else {
    const double total = params_.op_diff + params_.op_rewrite + params_.op_crossover;
    const double u = rng.uniform(counter++) * total;
    r.op = u < params_.op_diff                        ? "diff"
           : u < params_.op_diff + params_.op_rewrite ? "rewrite"
                                                      : "crossover";
    r.parent = state_.select_parent(r.island, rng.uniform(counter++));
    if (r.op == "crossover") {
      r.parent2 = state_.select_partner(r.island, r.parent, rng, counter);
      if (r.parent2 < 0) r.op = "diff";
    }
  }
  std::vector<int64_t> exclude;
  if (r.parent > 0) exclude.push_back(r.parent);
  if (r.parent2 > 0) exclude.push_back(r.parent2);
  if (r.op != "new") {
    r.inspirations = state_.inspirations(r.island, exclude, params_.inspirations, rng, counter);
  }
  std::vector<int> in_flight(backends_.size(), 0);
  for (const auto& [id, p] : active_) in_flight[p.model] += 1;
  prop.model = state_.choose_model(in_flight);
  r.model = models_[prop.model];
  PromptInput in{&task_, &params_, r.op, nullptr, nullptr, {}};
  if (r.parent > 0) in.parent = &state_.program(r.parent);
  if (r.parent2 > 0) in.parent2 = &state_.program(r.parent2);
  for (int64_t id : r.inspirations) in.inspirations.push_back(&state_.program(id));
  prop.messages = build_prompt(in);
  const int64_t id = r.id;
  active_.emplace(id, std::move(prop));
  submit_call(active_.at(id));
}

}  // namespace shoal::search

namespace shoal {

SearchRunSummary run_population(const SearchTask& task, const SearchRunOptions& options,
                                const PopulationHooks& hooks) {
  std::vector<std::unique_ptr<LlmBackend>> owned;
  std::vector<LlmBackend*> backends = search::run_backends(task, options, owned, "run_population");
  search::PopulationRunner runner(task, options, hooks, std::move(backends));
  return runner.run();
}

}  // namespace shoal
