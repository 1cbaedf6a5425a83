// What the coordinator does with each result: a call's answer becomes a candidate (or a logged
// patch failure / novelty rejection and a retry), an evaluation becomes a program, a migration
// copies elites along the ring; and the end of the run. See population_runner.h.
#include <cstdio>

#include "search/population_runner.h"

namespace shoal::search {

namespace {

// Runs `body` inside one transaction: all of it is committed, or none.
template <typename F>
void transaction(ProgramDb& db, F&& body) {
  db.begin();
  try {
    body();
  } catch (...) {
    db.rollback();
    throw;
  }
  db.commit();
}

}  // namespace

void PopulationRunner::handle_call(const Outcome& o) {
  --calls_in_flight_;
  Proposal& p = active_.at(o.proposal);
  const std::string& model = models_[p.model];
  CallRow c;
  c.run = run_;
  c.proposal = p.row.id;
  c.attempt = p.attempt;
  c.model = model;
  c.t = elapsed();
  if (o.response) {
    const LlmResponse& r = *o.response;
    c.input_tokens = r.usage.input_tokens;
    c.output_tokens = r.usage.output_tokens;
    c.cost_usd = r.usage.cost_usd;
    c.latency_s = r.latency_s;
    c.attempts = r.attempts;
    c.answer = r.text;
    p.row.cost_usd += r.usage.cost_usd;
    totals_.input_tokens += r.usage.input_tokens;
    totals_.output_tokens += r.usage.output_tokens;
    totals_.cost_usd += r.usage.cost_usd;
  }
  nlohmann::json line = {{"event", "call"},        {"run", run_},          {"t", c.t},
                         {"proposal", c.proposal}, {"attempt", c.attempt}, {"island", p.row.island},
                         {"op", p.row.op},         {"model", model}};
  std::string retry_message, outcome, error;
  bool retry_allowed = false;
  if (o.aborted) {
    c.status = "aborted";
    c.error = o.error;
    outcome = "interrupted";
    error = "stopped while the call ran";
  } else if (!o.response) {
    c.status = "failed";
    c.error = o.error;
    c.http_status = o.http_status;
    totals_.calls += 1;
    totals_.failed_calls += 1;
    p.row.calls += 1;
    outcome = "call_failed";
    error = o.error;
    if (warned_calls_++ < kWarningsPerKind) {
      status_.warn("proposal " + std::to_string(p.row.id) + " (" + model +
                   "): call failed: " + o.error);
    }
    if (o.kind == LlmErrorKind::kFatal) {
      stop(o.error, true);
    } else if (++failures_[p.model] >= kMaxConsecutiveFailures) {
      stop("model '" + model + "' failed " + std::to_string(kMaxConsecutiveFailures) +
               " calls in a row; the last: " + o.error,
           true);
    }
  } else {
    failures_[p.model] = 0;
    c.status = "ok";
    totals_.calls += 1;
    p.row.calls += 1;
    const std::string& text = o.response->text;
    const std::string base = p.row.parent > 0 ? state_.program(p.row.parent).code : "";
    // A diff answer without any SEARCH block but with a whole program is taken as a rewrite:
    // models often do that, and the program is as good a candidate.
    const bool as_diff = p.row.op == "diff" && text.find("SEARCH") != std::string::npos;
    const PatchResult patch =
        as_diff || (p.row.op == "diff" && !extract_code(text, params_.language))
            ? apply_search_replace(base, text)
            : splice_rewrite(base, text, params_.language);
    if (!patch.ok) {
      c.result = "patch_failed";
      c.error = patch.error;
      p.row.patch_failures += 1;
      retry_allowed = p.row.patch_failures <= params_.diff_retries;
      retry_message = patch_retry_message(patch.error);
      outcome = "patch_failed";
      error = patch.error;
      if (warned_patch_++ < kWarningsPerKind) {
        status_.warn("proposal " + std::to_string(p.row.id) + " (" + p.row.op + ", " + model +
                     "): the answer does not apply: " + patch.error +
                     (retry_allowed ? " (asking again)" : ""));
      }
    } else {
      std::pair<double, int64_t> similar{0.0, -1};
      if (params_.novelty.enabled) {
        similar = state_.most_similar(p.row.island, state_.signature(patch.code));
      }
      if (similar.second > 0 && similar.first >= params_.novelty.threshold) {
        char buf[160];
        std::snprintf(buf, sizeof buf, "similarity %.3f to program #%lld on island %d",
                      similar.first, static_cast<long long>(similar.second), p.row.island);
        c.result = "novelty_rejected";
        c.error = buf;
        p.row.novelty_rejections += 1;
        retry_allowed = p.row.novelty_rejections <= params_.novelty.retries;
        retry_message = novelty_retry_message(similar.first, similar.second);
        outcome = "novelty_rejected";
        error = buf;
        if (warned_novelty_++ < kWarningsPerKind) {
          status_.warn("proposal " + std::to_string(p.row.id) + ": rejected before evaluation, " +
                       buf + (retry_allowed ? " (asking again)" : ""));
        }
      } else {
        c.result = "accepted";
        p.candidate = patch.code;
      }
    }
  }
  line.update({{"status", c.status},
               {"result", c.result.empty() ? nlohmann::json(nullptr) : nlohmann::json(c.result)},
               {"error", c.error.empty() ? nlohmann::json(nullptr) : nlohmann::json(c.error)},
               {"input_tokens", c.input_tokens},
               {"output_tokens", c.output_tokens},
               {"cost_usd", c.cost_usd},
               {"latency_s", c.latency_s}});
  if (c.http_status != 0) line["http_status"] = c.http_status;
  log_->write(line);
  status_.event(line);

  const std::string answer = c.answer;
  transaction(*db_, [&] {
    db_->insert_call(c);
    if (c.result == "accepted") return;
    if (!outcome.empty() && !(retry_allowed && can_start())) end_proposal(p, outcome, error, 0);
  });
  if (c.result == "accepted") {
    Job job;
    job.proposal = p.row.id;
    job.model = p.model;
    job.eval = true;
    job.code = p.candidate;
    push(std::move(job));
  } else if (active_.count(o.proposal) > 0) {
    // A retry: the model sees its answer and why it could not be used.
    p.messages.push_back({"assistant", answer});
    p.messages.push_back({"user", retry_message});
    p.attempt += 1;
    submit_call(p);
  }
}

void PopulationRunner::end_proposal(Proposal& p, const std::string& outcome,
                                    const std::string& error, double reward) {
  p.row.outcome = outcome;
  p.row.error = error;
  p.row.reward = reward;
  db_->insert_proposal(p.row);
  state_.record(p.model, reward, p.row.cost_usd);
  totals_.proposals += 1;
  active_.erase(p.row.id);
}

void PopulationRunner::handle_eval(const Outcome& o) {
  Proposal& p = active_.at(o.proposal);
  if (o.aborted) {
    transaction(*db_, [&] { end_proposal(p, "interrupted", "stopped while evaluating", 0); });
    return;
  }
  const ProgramEvaluation& e = o.evaluation;
  Program prog = program_from(e, p.candidate);
  prog.id = static_cast<int64_t>(state_.size()) + 1;
  prog.island = p.row.island;
  prog.parent = p.row.parent;
  prog.parent2 = p.row.parent2;
  prog.op = p.row.op;
  prog.model = models_[p.model];
  prog.proposal = p.row.id;
  prog.generation = ++generation_;
  const double parent_score = p.row.parent > 0 ? state_.program(p.row.parent).score : 0;
  const double reward = improvement_reward(parent_score, prog.correct, prog.score);
  const int64_t id = prog.id;
  const std::vector<int64_t> archive_before = state_.archive();
  transaction(*db_, [&] {
    insert(std::move(prog));
    p.row.program = id;
    end_proposal(p, "evaluated", "", reward);
    if (params_.migration_interval > 0 && generation_ % params_.migration_interval == 0) {
      migrate(id);
    }
    if (state_.archive() != archive_before) db_->set_archive(state_.archive());
  });
  const Program& added = state_.program(id);
  totals_.programs = static_cast<int64_t>(state_.size());
  if (!e.ok) {
    totals_.eval_failures += 1;
    if (warned_eval_++ < kWarningsPerKind) {
      status_.warn("program " + std::to_string(id) + ": " + e.feedback +
                   (warned_eval_ == kWarningsPerKind ? " (further ones: calls.jsonl)" : ""));
    }
  }
  nlohmann::json line = {{"event", "program"},
                         {"run", run_},
                         {"t", elapsed()},
                         {"proposal", added.proposal},
                         {"program", id},
                         {"island", added.island},
                         {"op", added.op},
                         {"model", added.model},
                         {"parent", added.parent},
                         {"score", added.score},
                         {"correct", added.correct},
                         {"eval_ok", added.eval_ok},
                         {"cell", added.cell},
                         {"eval_s", added.eval_s}};
  if (!e.ok) line["error"] = e.feedback;
  log_->write(line);
  status_.event(line);
}

void PopulationRunner::migrate(int64_t trigger) {
  for (const auto& [source, target] : state_.migrations()) {
    const Program& src = state_.program(source);
    if (state_.island_has_code(target, src.code)) continue;  // a copy made earlier in this round
    Program c;
    c.id = static_cast<int64_t>(state_.size()) + 1;
    c.island = target;
    c.op = "migration";
    c.code = src.code;
    c.score = src.score;
    c.correct = src.correct;
    c.eval_ok = src.eval_ok;
    c.metrics = src.metrics;
    c.feedback = src.feedback;
    c.out_tail = src.out_tail;
    c.err_tail = src.err_tail;
    c.proposal = state_.program(trigger).proposal;
    c.generation = generation_;
    c.run = run_;
    c.created = static_cast<double>(std::time(nullptr));
    c.migrated_from = source;
    const int64_t id = c.id;
    const int from = src.island;
    insert(std::move(c));
    const nlohmann::json line = {{"event", "migration"}, {"run", run_},
                                 {"t", elapsed()},       {"program", id},
                                 {"from", source},       {"from_island", from},
                                 {"island", target},     {"generation", generation_}};
    log_->write(line);
    status_.event(line);
  }
}

std::string PopulationRunner::status_text() const {
  char buf[256];
  const int64_t best = state_.best();
  std::string best_text = "-";
  if (best > 0) {
    std::snprintf(buf, sizeof buf, "%.6g (#%lld)", state_.program(best).score,
                  static_cast<long long>(best));
    best_text = buf;
  }
  const std::string calls = task_.budget.calls > 0 ? std::to_string(totals_.calls) + "/" +
                                                         std::to_string(task_.budget.calls)
                                                   : std::to_string(totals_.calls);
  std::snprintf(buf, sizeof buf,
                "population: %s calls, %lld programs, best %s, $%.4f, %lld failed, %.0f s",
                calls.c_str(), static_cast<long long>(state_.size()), best_text.c_str(),
                totals_.cost_usd, static_cast<long long>(totals_.failed_calls), elapsed());
  return buf;
}

SearchRunSummary PopulationRunner::finish() {
  const std::string final_status =
      summary_.interrupted ? "interrupted"
                           : (summary_.fatal ? "stopped: " : "finished: ") + summary_.stop_reason;
  db_->end_run(run_, final_status, summary_.stop_reason, elapsed());
  write_population_best(options_.out_dir, state_, task_.best);
  write_file_atomic(options_.out_dir / "report.html",
                    population_report_html(options_.out_dir / "population.db"));
  std::error_code ec;
  std::filesystem::remove_all(options_.out_dir / "tmp", ec);
  const DbTotals t = db_->totals();
  summary_.generations = t.programs;
  summary_.calls = t.calls;
  summary_.failed_calls = t.failed_calls;
  summary_.scorer_failures = t.eval_failures;
  summary_.cost_usd = t.cost_usd;
  const int64_t best = state_.best();
  if (best > 0) {
    summary_.best_node = best;
    summary_.best_score = state_.program(best).score;
  }
  status_.finish(status_text() + " -> " + final_status);
  return summary_;
}

}  // namespace shoal::search
