// Operator prompts; see population_prompt.h. The templates use shoal's template syntax ({field},
// {{ and }} for braces), so a user may override any of them from the task file.
#include "search/population_prompt.h"

#include <cstdio>
#include <map>

#include "eval/template.h"
#include "shoal/error.h"

namespace shoal::search {
namespace {

const char* const kSystem =
    "You are an expert programmer improving programs in an evolutionary search. Follow the "
    "requested answer format exactly.";

const char* const kParent =
    "Here is a program (score {score}, metrics {metrics}):\n\n"
    "```{language}\n{program}```\n\n"
    "What its evaluation said:\n{feedback}\n\n";

const char* const kWholeProgram =
    "Answer with the complete program in one ```{language} code block. Keep the "
    "EVOLVE-BLOCK-START and EVOLVE-BLOCK-END marker lines (if any) and the code outside them "
    "unchanged: only code between the markers may change.";

std::map<std::string, std::string> make_defaults() {
  std::map<std::string, std::string> t;
  t["diff"] = std::string("{problem}\n\n") + kParent +
              "{inspirations}"
              "Improve the program's score. Answer with one or more SEARCH/REPLACE blocks that "
              "change only code between the EVOLVE-BLOCK-START and EVOLVE-BLOCK-END markers. The "
              "SEARCH part of a block must quote whole lines of the current program exactly, "
              "and match one place only:\n\n"
              "<<<<<<< SEARCH\nlines of the program to replace\n=======\nthe new lines\n"
              ">>>>>>> REPLACE\n\nExplain your idea in one or two sentences first.";
  t["rewrite"] = std::string("{problem}\n\n") + kParent +
                 "{inspirations}"
                 "Rewrite the program with a better idea to improve its score. " +
                 kWholeProgram;
  t["crossover"] =
      std::string(
          "{problem}\n\n"
          "Two different programs solve this problem.\n\n"
          "Program A (score {score}, metrics {metrics}):\n\n```{language}\n{program}```\n"
          "What its evaluation said:\n{feedback}\n\n"
          "Program B (score {score2}, metrics {metrics2}):\n\n```{language}\n{program2}```\n"
          "What its evaluation said:\n{feedback2}\n\n"
          "{inspirations}"
          "Combine the best ideas of both into one program that scores higher than "
          "either. ") +
      kWholeProgram;
  t["fix"] = std::string("{problem}\n\n") +
             "The program below does not work yet (score {score}).\n\n"
             "```{language}\n{program}```\n\n"
             "What its evaluation said:\n{feedback}\n\n"
             "{inspirations}"
             "Fix it so that it runs and gives a valid solution. " +
             kWholeProgram;
  t["new"] =
      "{problem}\n\nWrite a program that solves this problem. Answer with the complete "
      "program in one ```{language} code block.";
  return t;
}

std::string number_text(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.10g", x);
  return buf;
}

// Evaluator feedback, then the ends of stdout and stderr when they say something.
std::string feedback_text(const Program& p) {
  std::string out = p.feedback.empty() ? "(no feedback)" : p.feedback;
  if (!p.out_tail.empty()) out += "\nstdout (end):\n" + p.out_tail;
  if (!p.err_tail.empty()) out += "\nstderr (end):\n" + p.err_tail;
  return out;
}

std::string inspirations_text(const std::vector<const Program*>& list, const std::string& lang) {
  if (list.empty()) return "";
  std::string out = "Other programs of the population, for inspiration:\n\n";
  for (const Program* p : list) {
    out += "Program #" + std::to_string(p->id) + " (score " + number_text(p->score) + ", metrics " +
           p->metrics.dump() + "):\n```" + lang + "\n" + p->code + "```\n\n";
  }
  return out;
}

}  // namespace

const std::string& default_template(const std::string& op) {
  static const std::map<std::string, std::string> defaults = make_defaults();
  const auto it = defaults.find(op);
  SHOAL_ASSERT(it != defaults.end());
  return it->second;
}

std::vector<ChatMessage> build_prompt(const PromptInput& in) {
  nlohmann::json fields = {{"problem", in.task->problem}, {"language", in.params->language}};
  const auto add = [&](const Program* p, const std::string& suffix) {
    fields["program" + suffix] = p != nullptr ? p->code : "";
    fields["score" + suffix] = p != nullptr ? number_text(p->score) : "";
    fields["metrics" + suffix] = p != nullptr ? p->metrics.dump() : "{}";
    fields["feedback" + suffix] = p != nullptr ? feedback_text(*p) : "";
  };
  add(in.parent, "");
  add(in.parent2, "2");
  fields["inspirations"] = inspirations_text(in.inspirations, in.params->language);
  const auto custom = in.params->templates.find(in.op);
  const std::string& text =
      custom != in.params->templates.end() ? custom->second : default_template(in.op);
  std::string error;
  const auto tmpl = eval::Template::parse(text, &error);
  SHOAL_ASSERT(tmpl.has_value());  // defaults are valid; overrides are checked when loaded
  std::vector<ChatMessage> messages;
  messages.push_back({"system", in.task->system.empty() ? kSystem : in.task->system});
  messages.push_back({"user", tmpl->render(fields, in.task->file.string(), "templates." + in.op)});
  return messages;
}

std::string patch_retry_message(const std::string& error) {
  return "Your answer could not be used: " + error +
         ". Answer again in the requested format; a SEARCH part must quote lines of the current "
         "program exactly, from inside its EVOLVE-BLOCK.";
}

std::string novelty_retry_message(double similarity, int64_t program) {
  return "That program is too similar (estimated similarity " + number_text(similarity) +
         ") to program #" + std::to_string(program) +
         ", already in the population. Propose a substantially different change.";
}

}  // namespace shoal::search
