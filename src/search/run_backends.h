// The LLM backends of a search run, shared by the tree searches (search_run.cpp) and the
// population search (population_run.cpp).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "shoal/error.h"
#include "shoal/llm.h"
#include "shoal/search_run.h"

namespace shoal::search {

// options.backends when given (tests, benchmarks), else backends made from the task's models,
// kept alive in `owned`. `who` names the caller in the error for a count that does not match.
inline std::vector<LlmBackend*> run_backends(const SearchTask& task,
                                             const SearchRunOptions& options,
                                             std::vector<std::unique_ptr<LlmBackend>>& owned,
                                             const std::string& who) {
  std::vector<LlmBackend*> backends = options.backends;
  if (backends.empty()) {
    owned = make_search_backends(task);
    for (const auto& b : owned) backends.push_back(b.get());
  }
  if (backends.size() != task.models.size()) {
    throw ConfigError(who + ": " + std::to_string(backends.size()) + " backends for " +
                      std::to_string(task.models.size()) + " models");
  }
  return backends;
}

}  // namespace shoal::search
