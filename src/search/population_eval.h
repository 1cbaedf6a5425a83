// Evaluating one program (internal to the search layer): the user's command in a fresh temporary
// folder holding the program, with the hard limits of shoal/subprocess.h (wall-clock timeout that
// kills the process group, RLIMIT_AS), an optional cheap first stage, and JSON metrics parsed from
// stdout. Every failure becomes a score of 0 with the reason and the ends of stdout / stderr as
// feedback. Implemented in population_eval.cpp.
#pragma once

#include <atomic>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "shoal/population.h"
#include "shoal/search_run.h"

namespace shoal::search {

struct EvaluatorOptions {
  ScorerOptions scorer;       // the full evaluation (its working_dir is not used)
  PopulationCascade cascade;  // first stage, when its argv is not empty
  std::string file_name = "program.py";
  std::filesystem::path task_dir;   // $SHOAL_TASK_DIR
  std::filesystem::path temp_root;  // where the fresh folders are made (empty: system temp)
  size_t max_feedback_chars = 2000;
};

// Thread-safe; never throws for the evaluator's failures.
ProgramEvaluation evaluate_program(const EvaluatorOptions& options, const std::string& code,
                                   const std::vector<std::pair<std::string, std::string>>& env,
                                   const std::atomic<bool>* cancel);

// {"score": x (finite), "correct": bool (default true), "metrics": {...}, "feedback": "..."}: the
// whole of stdout, or its last non-empty line. ok = false with the reason otherwise.
ProgramEvaluation parse_evaluation(const std::string& out);

}  // namespace shoal::search
