// The operators' prompts (internal to the search layer): default user-message templates, the
// fields they are filled with, and the follow-up messages of a retry. Implemented in
// population_prompt.cpp; docs/POPULATION.md lists the fields.
#pragma once

#include <string>
#include <vector>

#include "search/population_state.h"
#include "shoal/search_run.h"
#include "shoal/tokenizer.h"

namespace shoal::search {

// The default template of an operator: diff, rewrite, crossover, fix, new.
const std::string& default_template(const std::string& op);

struct PromptInput {
  const SearchTask* task = nullptr;
  const PopulationParams* params = nullptr;
  std::string op;
  const Program* parent = nullptr;   // null for "new"
  const Program* parent2 = nullptr;  // crossover only
  std::vector<const Program*> inspirations;
};

// The system message (the task's, else a default) and the filled user message.
std::vector<ChatMessage> build_prompt(const PromptInput& in);

// What the model reads after an answer that could not be used, before it answers again.
std::string patch_retry_message(const std::string& error);
std::string novelty_retry_message(double similarity, int64_t program);

}  // namespace shoal::search
