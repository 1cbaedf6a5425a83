// SQLite storage of the population; see program_db.h. WAL journal with synchronous=NORMAL: a
// commit is atomic and the file consistent after a crash or a kill (the last commits may be lost
// on a power failure, never half-written).
#include "search/program_db.h"

#include <sqlite3.h>

#include <ctime>
#include <utility>

#include "shoal/error.h"

namespace shoal::search {
namespace {

using nlohmann::json;

constexpr const char* kSchema = R"(
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs(id INTEGER PRIMARY KEY, started REAL NOT NULL, ended REAL, status TEXT,
  stop_reason TEXT, wall_s REAL);
CREATE TABLE programs(id INTEGER PRIMARY KEY, island INTEGER NOT NULL,
  parent INTEGER REFERENCES programs(id), parent2 INTEGER REFERENCES programs(id),
  op TEXT NOT NULL, model TEXT, code TEXT NOT NULL, score REAL NOT NULL, correct INTEGER NOT NULL,
  eval_ok INTEGER NOT NULL, metrics TEXT NOT NULL, feedback TEXT NOT NULL, stdout TEXT NOT NULL,
  stderr TEXT NOT NULL, proposal INTEGER, generation INTEGER NOT NULL, run INTEGER NOT NULL,
  created REAL NOT NULL, migrated_from INTEGER REFERENCES programs(id), eval_s REAL NOT NULL,
  cell INTEGER);
CREATE INDEX programs_island ON programs(island, score);
CREATE TABLE proposals(id INTEGER PRIMARY KEY, run INTEGER NOT NULL, island INTEGER NOT NULL,
  op TEXT NOT NULL, model TEXT NOT NULL, parent INTEGER, parent2 INTEGER,
  inspirations TEXT NOT NULL, outcome TEXT NOT NULL, program INTEGER, calls INTEGER NOT NULL,
  novelty_rejections INTEGER NOT NULL, patch_failures INTEGER NOT NULL, reward REAL NOT NULL,
  cost_usd REAL NOT NULL, error TEXT);
CREATE TABLE calls(id INTEGER PRIMARY KEY, run INTEGER NOT NULL, proposal INTEGER NOT NULL,
  attempt INTEGER NOT NULL, model TEXT NOT NULL, status TEXT NOT NULL, result TEXT,
  input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL,
  latency_s REAL NOT NULL, attempts INTEGER NOT NULL, http_status INTEGER, error TEXT,
  answer TEXT, t REAL NOT NULL);
CREATE TABLE elites(island INTEGER NOT NULL, cell INTEGER NOT NULL,
  program INTEGER NOT NULL REFERENCES programs(id), PRIMARY KEY(island, cell));
CREATE TABLE archive(rank INTEGER PRIMARY KEY, program INTEGER NOT NULL REFERENCES programs(id));
)";

// A prepared statement, finalised on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) != SQLITE_OK) fail("prepare");
  }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int i, int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Stmt& bind(int i, int v) { return bind(i, static_cast<int64_t>(v)); }
  Stmt& bind(int i, double v) {
    sqlite3_bind_double(s_, i, v);
    return *this;
  }
  Stmt& bind(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  // -1 (no program) and empty texts are stored as NULL.
  Stmt& bind_id(int i, int64_t v) {
    if (v < 0)
      sqlite3_bind_null(s_, i);
    else
      sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Stmt& bind_opt(int i, const std::string& v) {
    if (v.empty())
      sqlite3_bind_null(s_, i);
    else
      bind(i, v);
    return *this;
  }
  bool step() {
    const int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc != SQLITE_DONE) fail("step");
    return false;
  }
  int64_t i64(int c) const {
    return sqlite3_column_type(s_, c) == SQLITE_NULL ? -1 : sqlite3_column_int64(s_, c);
  }
  double f64(int c) const { return sqlite3_column_double(s_, c); }
  std::string text(int c) const {
    const auto* p = sqlite3_column_text(s_, c);
    return p == nullptr ? std::string()
                        : std::string(reinterpret_cast<const char*>(p),
                                      static_cast<size_t>(sqlite3_column_bytes(s_, c)));
  }

 private:
  [[noreturn]] void fail(const char* what) const {
    throw IoError(std::string("population database: ") + what + ": " + sqlite3_errmsg(db_));
  }
  sqlite3* db_;
  sqlite3_stmt* s_ = nullptr;
};

sqlite3* open_file(const std::filesystem::path& path, int flags) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, flags, nullptr) != SQLITE_OK) {
    const std::string msg = db != nullptr ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    throw IoError("cannot open " + path.string() + ": " + msg);
  }
  sqlite3_busy_timeout(db, 5000);
  return db;
}

}  // namespace

ProgramDb::ProgramDb(ProgramDb&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)),
      path_(std::move(other.path_)),
      meta_(std::move(other.meta_)) {}

ProgramDb::~ProgramDb() {
  if (db_ != nullptr) sqlite3_close(db_);
}

void ProgramDb::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    const std::string msg = err != nullptr ? err : "unknown error";
    sqlite3_free(err);
    throw IoError("population database " + path_.string() + ": " + msg);
  }
}

ProgramDb ProgramDb::create(const std::filesystem::path& path, const json& meta) {
  if (std::filesystem::exists(path)) throw IoError(path.string() + " already exists");
  ProgramDb db(open_file(path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE));
  db.path_ = path;
  db.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;");
  db.begin();
  db.exec(kSchema);
  json m = meta;
  m["format"] = kPopulationDbFormat;
  m["version"] = kPopulationDbVersion;
  for (auto it = m.begin(); it != m.end(); ++it) {
    Stmt s(db.db_, "INSERT INTO meta(key, value) VALUES(?, ?)");
    s.bind(1, it.key()).bind(2, it.value().dump()).step();
  }
  db.commit();
  db.meta_ = std::move(m);
  return db;
}

ProgramDb ProgramDb::open(const std::filesystem::path& path) {
  if (!std::filesystem::exists(path)) throw IoError(path.string() + " does not exist");
  ProgramDb db(open_file(path, SQLITE_OPEN_READWRITE));
  db.path_ = path;
  db.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;");
  db.read_meta();
  return db;
}

void ProgramDb::read_meta() {
  try {
    Stmt s(db_, "SELECT key, value FROM meta");
    meta_ = json::object();
    while (s.step()) meta_[s.text(0)] = json::parse(s.text(1));
  } catch (const std::exception& e) {
    throw FormatError(path_.string() + ": not a shoal population database (" + e.what() + ")");
  }
  if (meta_.value("format", json()) != kPopulationDbFormat) {
    throw FormatError(path_.string() + ": meta.format is not \"" + kPopulationDbFormat + "\"");
  }
  if (meta_.value("version", json()) != kPopulationDbVersion) {
    throw FormatError(path_.string() + ": meta.version " + meta_.value("version", json()).dump() +
                      " is not " + std::to_string(kPopulationDbVersion));
  }
}

void ProgramDb::begin() {
  exec("BEGIN IMMEDIATE");
}
void ProgramDb::commit() {
  exec("COMMIT");
}
void ProgramDb::rollback() {
  sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);  // nothing to report if none is open
}

void ProgramDb::insert_program(const Program& p) {
  Stmt s(db_,
         "INSERT INTO programs(id, island, parent, parent2, op, model, code, score, correct, "
         "eval_ok, metrics, feedback, stdout, stderr, proposal, generation, run, created, "
         "migrated_from, eval_s, cell) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
  s.bind(1, p.id).bind(2, p.island).bind_id(3, p.parent).bind_id(4, p.parent2).bind(5, p.op);
  s.bind_opt(6, p.model).bind(7, p.code).bind(8, p.score).bind(9, p.correct ? 1 : 0);
  s.bind(10, p.eval_ok ? 1 : 0).bind(11, p.metrics.dump()).bind(12, p.feedback);
  s.bind(13, p.out_tail).bind(14, p.err_tail).bind_id(15, p.proposal).bind(16, p.generation);
  s.bind(17, p.run).bind(18, p.created).bind_id(19, p.migrated_from).bind(20, p.eval_s);
  s.bind_id(21, p.cell);
  s.step();
}

void ProgramDb::set_elite(int island, int64_t cell, int64_t program) {
  Stmt s(db_, "INSERT OR REPLACE INTO elites(island, cell, program) VALUES(?, ?, ?)");
  s.bind(1, island).bind(2, cell).bind(3, program).step();
}

void ProgramDb::set_archive(const std::vector<int64_t>& ids) {
  exec("DELETE FROM archive");
  for (size_t i = 0; i < ids.size(); ++i) {
    Stmt s(db_, "INSERT INTO archive(rank, program) VALUES(?, ?)");
    s.bind(1, static_cast<int64_t>(i + 1)).bind(2, ids[i]).step();
  }
}

void ProgramDb::insert_call(const CallRow& c) {
  Stmt s(db_,
         "INSERT INTO calls(run, proposal, attempt, model, status, result, input_tokens, "
         "output_tokens, cost_usd, latency_s, attempts, http_status, error, answer, t) "
         "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
  s.bind(1, c.run).bind(2, c.proposal).bind(3, c.attempt).bind(4, c.model).bind(5, c.status);
  s.bind_opt(6, c.result).bind(7, c.input_tokens).bind(8, c.output_tokens).bind(9, c.cost_usd);
  s.bind(10, c.latency_s).bind(11, c.attempts).bind_id(12, c.http_status == 0 ? -1 : c.http_status);
  s.bind_opt(13, c.error).bind_opt(14, c.answer).bind(15, c.t);
  s.step();
}

void ProgramDb::insert_proposal(const ProposalRow& p) {
  Stmt s(db_,
         "INSERT INTO proposals(id, run, island, op, model, parent, parent2, inspirations, "
         "outcome, program, calls, novelty_rejections, patch_failures, reward, cost_usd, error) "
         "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
  s.bind(1, p.id).bind(2, p.run).bind(3, p.island).bind(4, p.op).bind(5, p.model);
  s.bind_id(6, p.parent).bind_id(7, p.parent2).bind(8, json(p.inspirations).dump());
  s.bind(9, p.outcome).bind_id(10, p.program).bind(11, p.calls).bind(12, p.novelty_rejections);
  s.bind(13, p.patch_failures).bind(14, p.reward).bind(15, p.cost_usd).bind_opt(16, p.error);
  s.step();
}

int64_t ProgramDb::begin_run(double started_unix) {
  Stmt s(db_, "INSERT INTO runs(started, status) VALUES(?, 'running')");
  s.bind(1, started_unix).step();
  return sqlite3_last_insert_rowid(db_);
}

void ProgramDb::end_run(int64_t run, const std::string& status, const std::string& stop_reason,
                        double wall_s) {
  Stmt s(db_, "UPDATE runs SET ended = ?, status = ?, stop_reason = ?, wall_s = ? WHERE id = ?");
  s.bind(1, static_cast<double>(std::time(nullptr))).bind(2, status).bind(3, stop_reason);
  s.bind(4, wall_s).bind(5, run).step();
}

std::vector<Program> ProgramDb::load_programs() const {
  Stmt s(db_,
         "SELECT id, island, parent, parent2, op, model, code, score, correct, eval_ok, metrics, "
         "feedback, stdout, stderr, proposal, generation, run, created, migrated_from, eval_s "
         "FROM programs ORDER BY id");
  std::vector<Program> out;
  while (s.step()) {
    Program p;
    p.id = s.i64(0);
    p.island = static_cast<int>(s.i64(1));
    p.parent = s.i64(2);
    p.parent2 = s.i64(3);
    p.op = s.text(4);
    p.model = s.text(5);
    p.code = s.text(6);
    p.score = s.f64(7);
    p.correct = s.i64(8) != 0;
    p.eval_ok = s.i64(9) != 0;
    p.metrics = json::parse(s.text(10), nullptr, false);
    if (!p.metrics.is_object()) {
      throw FormatError(path_.string() + ": programs.metrics of program " + std::to_string(p.id) +
                        " is not a JSON object");
    }
    p.feedback = s.text(11);
    p.out_tail = s.text(12);
    p.err_tail = s.text(13);
    p.proposal = s.i64(14);
    p.generation = s.i64(15);
    p.run = s.i64(16);
    p.created = s.f64(17);
    p.migrated_from = s.i64(18);
    p.eval_s = s.f64(19);
    if (p.id != static_cast<int64_t>(out.size()) + 1) {
      throw FormatError(path_.string() + ": program ids are not 1, 2, 3, ... (found " +
                        std::to_string(p.id) + ")");
    }
    out.push_back(std::move(p));
  }
  return out;
}

std::vector<ProposalRow> ProgramDb::load_proposals() const {
  Stmt s(db_,
         "SELECT id, run, island, op, model, parent, parent2, inspirations, outcome, program, "
         "calls, novelty_rejections, patch_failures, reward, cost_usd, error FROM proposals "
         "ORDER BY id");
  std::vector<ProposalRow> out;
  while (s.step()) {
    ProposalRow p;
    p.id = s.i64(0);
    p.run = s.i64(1);
    p.island = static_cast<int>(s.i64(2));
    p.op = s.text(3);
    p.model = s.text(4);
    p.parent = s.i64(5);
    p.parent2 = s.i64(6);
    const json insp = json::parse(s.text(7), nullptr, false);
    if (insp.is_array()) {
      for (const json& x : insp) {
        if (x.is_number_integer()) p.inspirations.push_back(x.get<int64_t>());
      }
    }
    p.outcome = s.text(8);
    p.program = s.i64(9);
    p.calls = static_cast<int>(s.i64(10));
    p.novelty_rejections = static_cast<int>(s.i64(11));
    p.patch_failures = static_cast<int>(s.i64(12));
    p.reward = s.f64(13);
    p.cost_usd = s.f64(14);
    p.error = s.text(15);
    out.push_back(std::move(p));
  }
  return out;
}

DbTotals ProgramDb::totals() const {
  DbTotals t;
  {
    Stmt s(db_,
           "SELECT COALESCE(SUM(status != 'aborted'), 0), COALESCE(SUM(status = 'failed'), 0), "
           "COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), "
           "COALESCE(SUM(cost_usd), 0) FROM calls");
    s.step();
    t.calls = s.i64(0);
    t.failed_calls = s.i64(1);
    t.input_tokens = s.i64(2);
    t.output_tokens = s.i64(3);
    t.cost_usd = s.f64(4);
  }
  {
    Stmt s(db_,
           "SELECT COUNT(*), COALESCE(SUM(eval_ok = 0 AND op != 'migration'), 0) FROM programs");
    s.step();
    t.programs = s.i64(0);
    t.eval_failures = s.i64(1);
  }
  {
    Stmt s(db_, "SELECT COUNT(*) FROM proposals");
    s.step();
    t.proposals = s.i64(0);
  }
  {
    Stmt s(db_, "SELECT COUNT(*), COALESCE(SUM(wall_s), 0) FROM runs");
    s.step();
    t.runs = s.i64(0);
    t.wall_s = s.f64(1);
  }
  return t;
}

int64_t ProgramDb::next_proposal() const {
  Stmt s(db_,
         "SELECT MAX(COALESCE((SELECT MAX(id) FROM proposals), 0), "
         "COALESCE((SELECT MAX(proposal) FROM calls), 0))");
  s.step();
  return s.i64(0) + 1;
}

}  // namespace shoal::search
