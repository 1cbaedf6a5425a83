// The population's SQLite database (internal to the search layer): every program, LLM call,
// proposal and run, plus the current grid elites and archive for inspection. One connection,
// used by the run's coordinator thread only. Writes happen in transactions that leave the file
// consistent at every commit, so a run killed at any point resumes from the file alone. The
// schema is in docs/POPULATION.md. Implemented in program_db.cpp.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "search/population_state.h"

struct sqlite3;

namespace shoal::search {

constexpr const char* kPopulationDbFormat = "shoal-population";
constexpr int kPopulationDbVersion = 1;

struct CallRow {
  int64_t run = 0;
  int64_t proposal = 0;
  int attempt = 0;  // 0 for the proposal's first call, then retries
  std::string model;
  std::string status;  // ok, failed, aborted
  std::string result;  // accepted, patch_failed, novelty_rejected, or empty
  int64_t input_tokens = 0, output_tokens = 0;
  double cost_usd = 0, latency_s = 0, t = 0;
  int attempts = 0;
  int http_status = 0;
  std::string error;
  std::string answer;
};

struct ProposalRow {
  int64_t id = 0;
  int64_t run = 0;
  int island = 0;
  std::string op, model;
  int64_t parent = -1, parent2 = -1;
  std::vector<int64_t> inspirations;
  std::string outcome;  // evaluated, patch_failed, novelty_rejected, call_failed, stopped,
                        // interrupted
  int64_t program = -1;
  int calls = 0;
  int novelty_rejections = 0, patch_failures = 0;
  double reward = 0, cost_usd = 0;
  std::string error;
};

// Usage summed over every run (the totals of SearchRunSummary and the status line).
struct DbTotals {
  int64_t calls = 0;  // counted calls (failed included, aborted excluded)
  int64_t failed_calls = 0;
  int64_t eval_failures = 0;  // programs whose evaluator failed
  int64_t input_tokens = 0, output_tokens = 0;
  double cost_usd = 0;
  int64_t proposals = 0;
  int64_t programs = 0;
  int64_t runs = 0;
  double wall_s = 0;  // finished runs' wall time
};

class ProgramDb {
 public:
  // Creates the file with the schema and `meta` (IoError when it cannot); it must not exist.
  static ProgramDb create(const std::filesystem::path& path, const nlohmann::json& meta);
  // Opens an existing database: FormatError when it is not a population database.
  static ProgramDb open(const std::filesystem::path& path);
  ProgramDb(ProgramDb&& other) noexcept;
  ProgramDb& operator=(ProgramDb&&) = delete;
  ~ProgramDb();

  const nlohmann::json& meta() const { return meta_; }

  void begin();
  void commit();
  void rollback();

  void insert_program(const Program& p);
  // The island's cell now holds `program` (grid elites table).
  void set_elite(int island, int64_t cell, int64_t program);
  void set_archive(const std::vector<int64_t>& ids);
  void insert_call(const CallRow& c);
  void insert_proposal(const ProposalRow& p);
  int64_t begin_run(double started_unix);
  void end_run(int64_t run, const std::string& status, const std::string& stop_reason,
               double wall_s);

  std::vector<Program> load_programs() const;       // in id order (derived fields not set)
  std::vector<ProposalRow> load_proposals() const;  // in id order
  DbTotals totals() const;
  int64_t next_proposal() const;  // 1 + the highest proposal id (1 when none)

 private:
  explicit ProgramDb(sqlite3* db) : db_(db) {}
  void exec(const char* sql);
  void read_meta();

  sqlite3* db_ = nullptr;
  std::filesystem::path path_;
  nlohmann::json meta_;
};

}  // namespace shoal::search
