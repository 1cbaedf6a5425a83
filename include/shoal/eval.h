// Evaluation of language models on tasks: multiple choice by log-likelihood, generation with
// answer extraction and exact match, perplexity over text. Tasks are YAML files over JSONL
// datasets (docs/EVAL.md). The evaluator talks to a model only through EvalBackend, so it runs
// on the built-in engine, on a mock in tests, or on anything else that can score and generate.
//
// Implemented in src/eval/: task_file.cpp (task YAML), task_load.cpp (datasets rendered into
// samples), jsonl.cpp (dataset files), template.cpp (prompt templates), answer.cpp (extraction
// and normalisation), evaluate.cpp (requests, batching, metrics), report.cpp (JSON output).
// Nothing here is thread-safe by itself: evaluate() calls the backend from the calling thread;
// a backend may use threads inside one call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace shoal {

// ---- The model, as the evaluator sees it ----------------------------------------------------

// Score `continuation` after `context`. The model reads context ++ continuation minus its last
// token; evaluate() keeps that within context_length() and never sends an empty context or an
// empty continuation.
struct LoglikelihoodRequest {
  std::vector<int32_t> context;
  std::vector<int32_t> continuation;
};

struct LoglikelihoodResult {
  double logprob = 0;   // sum over the continuation's tokens of ln p(token | everything before)
  bool greedy = false;  // every continuation token is the most likely one at its position
};

// Continue `prompt` for at most `max_tokens` tokens (greedy), stopping early when the text
// generated so far contains one of `stop`. evaluate() keeps prompt.size() + max_tokens within
// context_length().
struct GenerationRequest {
  std::vector<int32_t> prompt;
  int max_tokens = 0;
  std::vector<std::string> stop;
};

class EvalBackend {
 public:
  virtual ~EvalBackend() = default;
  // Token ids of `text`; with add_bos, preceded by the model's beginning-of-sequence token when
  // it has one (the caller relies on encode("", true) being exactly that prefix).
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos) = 0;
  virtual std::string decode(std::span<const int32_t> ids) = 0;
  // One result per request, in order. Called with many requests at once (up to the batch size)
  // so that an engine can put them in one forward pass.
  virtual std::vector<LoglikelihoodResult> loglikelihood(
      std::span<const LoglikelihoodRequest> requests) = 0;
  // The generated text of each request, in order, without the prompt. Text from the first stop
  // string on may be included or not: the evaluator cuts it off either way.
  virtual std::vector<std::string> generate(std::span<const GenerationRequest> requests) = 0;
  // Most tokens the model reads in one sequence.
  virtual int context_length() const = 0;
};

// ---- Datasets -------------------------------------------------------------------------------

// One line of a JSONL file: a JSON object and its 1-based line number.
struct JsonlRecord {
  nlohmann::json value;
  int line = 0;
};

// Reads a JSONL file: one JSON object per line; blank lines are skipped (but counted). Throws
// IoError when it cannot be read, FormatError("<file>:<line>: ...") for a line that is not a JSON
// object.
std::vector<JsonlRecord> read_jsonl(const std::filesystem::path& file);

// ---- Answers --------------------------------------------------------------------------------

// How an answer is pulled out of a text (a model's output, or a dataset's target).
struct Extraction {
  enum class Kind { kNone, kRegex, kLastNumber };
  Kind kind = Kind::kNone;
  std::string pattern;      // kRegex: ECMAScript syntax (std::regex)
  bool last_match = false;  // kRegex: take the last match instead of the first
};

// kNone: the text itself. kRegex: the first capture group that took part in the match, or the
// whole match if the pattern has no groups. kLastNumber: see last_number(). nullopt when nothing
// is found. Throws ConfigError for an invalid pattern.
std::optional<std::string> extract_answer(const Extraction& how, std::string_view text);

// The last number in `text`, as written: an optional '-' (a sign only when not preceded by a
// letter or digit), digits with ',' between digits, then optionally '.' and digits.
// "costs $1,234.50." -> "1,234.50"; "from 3-5" -> "5"; "x = -7" -> "-7".
std::optional<std::string> last_number(std::string_view text);

// Normalisation applied to both sides before exact match, in this order: strip, ignore,
// remove_commas, lower, strip again, numbers.
struct Normalization {
  bool strip = true;                // trim leading and trailing whitespace
  std::vector<std::string> ignore;  // ECMAScript regexes; every match is removed
  bool remove_commas = false;       // "1,234" -> "1234" (only commas between digits)
  bool lower = false;               // ASCII lower case
  bool numbers = false;             // a text that is one number is written canonically:
                                    // "+018.50" -> "18.5", "-0.0" -> "0", "1,000" -> "1000"
};

std::string normalize_answer(const Normalization& how, std::string_view text);

// ---- Tasks ----------------------------------------------------------------------------------

enum class TaskKind { kMultipleChoice, kGeneration, kPerplexity };

std::string_view task_kind_name(TaskKind kind);  // "multiple_choice", "generation", "perplexity"

// One evaluated example, rendered from its JSONL record when the task is loaded (so a missing
// field is reported before any model runs).
struct TaskSample {
  size_t index = 0;  // position in the evaluated split
  int line = 0;      // line in the split's JSONL file
  // The prompt template rendered (without few-shot examples); perplexity: the text.
  std::string prompt;
  std::vector<std::string> choices;  // multiple choice
  int gold = -1;                     // multiple choice: index into choices
  std::string target;                // generation: the rendered target template
  std::string answer;                // generation: the target's extracted, normalised answer
};

// A task file parsed, its datasets read and its samples rendered. Every field is documented, with
// its YAML key, in docs/EVAL.md.
struct TaskSpec {
  std::filesystem::path file;  // the task file (for messages)
  int line = 1;                // where the task starts in it
  std::string name;
  TaskKind kind = TaskKind::kMultipleChoice;
  std::string split = "test";          // the evaluated split
  std::filesystem::path data_file;     // its JSONL file
  std::optional<size_t> limit;         // evaluate only the first `limit` samples
  double weight = 1;                   // in EvalResult::score
  std::string metric;                  // the metric that becomes the task's score
  bool add_bos = true;                 // ask encode() for the BOS token at the start of a sequence
  std::string target_delimiter = " ";  // between a prompt and its answer
  // Description and few-shot examples, each example followed by the separator; put in front of
  // every prompt.
  std::string fewshot_prefix;
  size_t n_fewshot = 0;
  int max_tokens = 256;             // generation
  std::vector<std::string> stop;    // generation
  Extraction extract;               // generation: from the model's output
  Extraction gold_extract;          // generation: from the target
  Normalization normalize;          // generation
  std::optional<int> stride;        // perplexity: tokens predicted per window after the first
  std::vector<TaskSample> samples;  // the evaluated split, `limit` applied
};

// A task file holds one task (a mapping) or several (`tasks:` followed by a list of mappings).
// Dataset paths are relative to the task file's folder. Throws ConfigError("<file>:<line>: ...")
// for bad YAML, an unknown key, a wrong value or an unknown kind; FormatError for a bad dataset
// line or a record that lacks a field the templates use.
std::vector<TaskSpec> parse_tasks(std::string_view yaml_text, const std::filesystem::path& file);
std::vector<TaskSpec> load_tasks(const std::filesystem::path& file);
// As load_tasks, with every task's evaluated split set to `split` whatever the file says
// (`shoal evolve` searches on "dev" and reports on "test"). A task whose dataset lacks that split
// is a ConfigError naming the file and the line of its `dataset:`.
std::vector<TaskSpec> load_tasks(const std::filesystem::path& file, const std::string& split);

// ---- Evaluation -----------------------------------------------------------------------------

struct EvalOptions {
  std::optional<size_t> limit;  // at most this many samples per task (as well as the task's own)
  size_t batch_size = 32;       // requests per backend call
  bool keep_samples = false;    // fill TaskResult::samples
  // Called after each backend call: task name, requests done, requests in the task.
  std::function<void(const std::string& task, size_t done, size_t total)> on_progress;
};

struct TaskResult {
  std::string name;
  TaskKind kind = TaskKind::kMultipleChoice;
  size_t n_samples = 0;
  // multiple choice: acc, acc_stderr, acc_norm, acc_norm_stderr; generation: exact_match,
  // exact_match_stderr; perplexity: perplexity, token_count, total_nll, byte_count,
  // bits_per_byte.
  std::map<std::string, double> metrics;
  std::string metric;  // which metric became `score`
  // Higher is better: acc, acc_norm, exact_match as they are; for perplexity the mean
  // log-likelihood per token (-ln perplexity); for bits_per_byte its negative.
  double score = 0;
  double weight = 1;
  std::vector<nlohmann::json> samples;  // one record per sample when asked for
};

struct EvalResult {
  std::vector<TaskResult> tasks;
  double score = 0;  // sum over tasks of weight * score
};

// Evaluates every task, batching each task's requests into calls of at most batch_size. Throws
// ConfigError when a prompt cannot fit the model's context, or two tasks share a name; Error when
// the backend breaks its contract (wrong number of results).
EvalResult evaluate(EvalBackend& backend, std::span<const TaskSpec> tasks,
                    const EvalOptions& options = {});

// {"results": {task: {"kind", "samples", "metric", "score", "weight", metrics...}}, "score": s}.
nlohmann::json to_json(const EvalResult& result);
// Every kept sample record as one JSON line.
void write_samples_jsonl(std::ostream& out, const EvalResult& result);

}  // namespace shoal
