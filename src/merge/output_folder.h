// Everything in a merged model folder besides the weights: config.json, tokenizer files (rebuilt
// from the vocabulary when the tokenizer model is a GGUF file), the
// model card and the recipe. Implemented in src/merge/output_folder.cpp.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "merge/plan.h"
#include "shoal/recipe.h"

namespace shoal::merge {

// The Jinja text for a recipe's chat_template value: a known name ("chatml") or a literal
// template (anything containing "{{" or "{%"). Throws ConfigError naming the recipe otherwise.
std::optional<std::string> resolve_chat_template(const Recipe& recipe);

// Writes config.json, the tokenizer files of plan.tokenizer_model (with chat_template applied),
// README.md (model card) and mergekit_config.yml (the recipe verbatim) into `dir`.
void write_folder_extras(const std::filesystem::path& dir, const Recipe& recipe,
                         const MergePlan& plan, bool copy_tokenizer);

// Writes `text` to `path` (truncating); IoError naming the file on failure.
void write_text_file(const std::filesystem::path& path, const std::string& text);

}  // namespace shoal::merge
