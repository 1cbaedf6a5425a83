// A task as its YAML file says it, before any dataset is read: the hand-off between
// task_file.cpp (YAML parsing) and task_load.cpp (datasets, rendering). Internal to eval.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "eval/template.h"
#include "shoal/eval.h"

namespace shoal::eval {

// A template with the line it was written on.
struct LinedTemplate {
  Template tmpl;
  int line = 0;
};

// What the YAML says, before any dataset is read.
struct RawTask {
  int line = 1;
  std::string name;
  TaskKind kind = TaskKind::kMultipleChoice;
  std::map<std::string, std::pair<std::string, int>> splits;  // name -> (path, line)
  int dataset_line = 0;
  std::string split = "test";
  int split_line = 0;
  std::optional<size_t> limit;
  double weight = 1;
  std::string metric;
  int metric_line = 0;
  bool add_bos = true;
  std::string description;
  std::optional<LinedTemplate> prompt, target, text;
  std::string target_delimiter = " ";
  size_t fewshot_count = 0;
  std::string fewshot_split = "train";
  std::string separator = "\n\n";
  int fewshot_line = 0;
  std::optional<std::string> choices_field;
  std::vector<LinedTemplate> choice_templates;
  int choices_line = 0;
  std::string gold_field;
  int gold_line = 0;
  int gold_base = 0;
  std::vector<std::string> gold_labels;
  int max_tokens = 256;
  std::optional<std::vector<std::string>> stop;
  Extraction extract, gold_extract;
  Normalization normalize;
  std::optional<int> stride;
};

// Reads the task's datasets and renders its samples and few-shot prefix. `task_file` is where
// dataset paths are relative to and what ConfigErrors name. Throws as parse_tasks documents.
TaskSpec load_task(const RawTask& raw, const std::filesystem::path& task_file);

}  // namespace shoal::eval
