// Tasks -> backend requests -> metrics. Each task's requests are built first, then sent in calls
// of at most batch_size, in dataset order, so that an engine can put a whole call into one
// forward pass. Results never depend on the batch size.
#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "shoal/error.h"
#include "shoal/eval.h"

namespace shoal {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string where(const TaskSpec& task, const TaskSample& s) {
  return task.data_file.string() + ":" + std::to_string(s.line) + " (task " + task.name + ")";
}

std::string task_where(const TaskSpec& task) {
  return task.file.string() + ":" + std::to_string(task.line) + " (task " + task.name + ")";
}

// Sends `requests` in consecutive chunks of at most options.batch_size.
template <class Result, class Request, class Call>
std::vector<Result> batched(const std::vector<Request>& requests, const std::string& task,
                            const EvalOptions& options, Call call) {
  std::vector<Result> out;
  out.reserve(requests.size());
  const size_t batch = std::max<size_t>(1, options.batch_size);
  for (size_t begin = 0; begin < requests.size(); begin += batch) {
    const size_t n = std::min(batch, requests.size() - begin);
    std::vector<Result> part = call(std::span<const Request>(requests.data() + begin, n));
    if (part.size() != n) {
      throw Error("evaluation backend returned " + std::to_string(part.size()) + " results for " +
                  std::to_string(n) + " requests (task " + task + ")");
    }
    std::move(part.begin(), part.end(), std::back_inserter(out));
    if (options.on_progress) options.on_progress(task, begin + n, requests.size());
  }
  return out;
}

// Standard error of a mean of 0/1 values, with the sample variance (n - 1), as lm-eval-harness.
double stderr_of_mean(double p, size_t n) {
  return n > 1 ? std::sqrt(p * (1 - p) / static_cast<double>(n - 1)) : kNaN;
}

// Drops context tokens from the left until the model reads at most L tokens
// (context + continuation - 1).
void fit(LoglikelihoodRequest& r, int context_length, const std::string& at) {
  const size_t L = static_cast<size_t>(context_length);
  if (r.continuation.size() > L) {
    throw ConfigError(at + ": a continuation of " + std::to_string(r.continuation.size()) +
                      " tokens does not fit the model's context of " + std::to_string(L) +
                      " tokens");
  }
  if (r.context.size() + r.continuation.size() - 1 > L) {
    const size_t keep = L + 1 - r.continuation.size();
    r.context.erase(r.context.begin(), r.context.end() - static_cast<std::ptrdiff_t>(keep));
  }
}

size_t argmax(const std::vector<double>& v) {
  return static_cast<size_t>(std::max_element(v.begin(), v.end()) - v.begin());  // first on ties
}

TaskResult multiple_choice(EvalBackend& backend, const TaskSpec& task, size_t n,
                           const EvalOptions& options) {
  const int L = backend.context_length();
  std::vector<LoglikelihoodRequest> requests;
  std::vector<size_t> first(n);  // index of each sample's first request
  for (size_t i = 0; i < n; ++i) {
    const TaskSample& s = task.samples[i];
    first[i] = requests.size();
    // As lm-eval-harness: trailing whitespace of the context goes to the continuation, where
    // tokenizers that glue a space to the next word expect it.
    std::string context = task.fewshot_prefix + s.prompt;
    const size_t end = context.find_last_not_of(" \t\n\r") + 1;  // npos + 1 == 0
    const std::string moved = context.substr(end);
    context.resize(end);
    const std::vector<int32_t> context_ids = backend.encode(context, task.add_bos);
    if (context_ids.empty()) {
      throw ConfigError(where(task, s) + ": the context is empty and the model has no BOS token");
    }
    for (size_t j = 0; j < s.choices.size(); ++j) {
      // The whole text is encoded at once and split where the context's tokens end, so the
      // continuation is tokenized as the model would see it in running text.
      const std::vector<int32_t> whole =
          backend.encode(context + moved + task.target_delimiter + s.choices[j], task.add_bos);
      if (whole.size() <= context_ids.size()) {
        throw ConfigError(where(task, s) + ": choice " + std::to_string(j) +
                          " adds no tokens after the context");
      }
      const auto split = whole.begin() + static_cast<std::ptrdiff_t>(context_ids.size());
      LoglikelihoodRequest r{{whole.begin(), split}, {split, whole.end()}};
      fit(r, L, where(task, s));
      requests.push_back(std::move(r));
    }
  }
  const auto results = batched<LoglikelihoodResult>(
      requests, task.name, options,
      [&](std::span<const LoglikelihoodRequest> part) { return backend.loglikelihood(part); });

  TaskResult out;
  size_t n_acc = 0, n_acc_norm = 0;
  for (size_t i = 0; i < n; ++i) {
    const TaskSample& s = task.samples[i];
    std::vector<double> logprobs, normalized;
    std::vector<bool> greedy;
    for (size_t j = 0; j < s.choices.size(); ++j) {
      const LoglikelihoodResult& r = results[first[i] + j];
      logprobs.push_back(r.logprob);
      greedy.push_back(r.greedy);
      // acc_norm: per byte of the choice text (the delimiter excluded).
      normalized.push_back(r.logprob / static_cast<double>(s.choices[j].size()));
    }
    const size_t pred = argmax(logprobs), pred_norm = argmax(normalized);
    const bool acc = pred == static_cast<size_t>(s.gold);
    const bool acc_norm = pred_norm == static_cast<size_t>(s.gold);
    n_acc += acc;
    n_acc_norm += acc_norm;
    if (options.keep_samples) {
      out.samples.push_back({{"task", task.name},
                             {"index", s.index},
                             {"line", s.line},
                             {"prompt", s.prompt},
                             {"choices", s.choices},
                             {"gold", s.gold},
                             {"logprobs", logprobs},
                             {"greedy", greedy},
                             {"pred", pred},
                             {"pred_norm", pred_norm},
                             {"acc", acc ? 1 : 0},
                             {"acc_norm", acc_norm ? 1 : 0}});
    }
  }
  const double acc = static_cast<double>(n_acc) / static_cast<double>(n);
  const double acc_norm = static_cast<double>(n_acc_norm) / static_cast<double>(n);
  out.metrics = {{"acc", acc},
                 {"acc_stderr", stderr_of_mean(acc, n)},
                 {"acc_norm", acc_norm},
                 {"acc_norm_stderr", stderr_of_mean(acc_norm, n)}};
  out.score = out.metrics.at(task.metric);
  return out;
}

// `text` up to the earliest occurrence of any stop string.
std::string cut_at_stop(std::string text, const std::vector<std::string>& stop) {
  size_t cut = text.size();
  for (const std::string& s : stop) cut = std::min(cut, text.find(s));
  text.resize(cut);
  return text;
}

TaskResult generation(EvalBackend& backend, const TaskSpec& task, size_t n,
                      const EvalOptions& options) {
  const int L = backend.context_length();
  if (task.max_tokens >= L) {
    throw ConfigError(task_where(task) + ": max_tokens " + std::to_string(task.max_tokens) +
                      " leaves no room for a prompt in the model's context of " +
                      std::to_string(L) + " tokens");
  }
  const size_t keep = static_cast<size_t>(L - task.max_tokens);
  std::vector<GenerationRequest> requests;
  for (size_t i = 0; i < n; ++i) {
    const TaskSample& s = task.samples[i];
    GenerationRequest r{backend.encode(task.fewshot_prefix + s.prompt, task.add_bos),
                        task.max_tokens, task.stop};
    if (r.prompt.empty()) {
      throw ConfigError(where(task, s) + ": the prompt is empty and the model has no BOS token");
    }
    if (r.prompt.size() > keep) {  // keep the end of the prompt, as for log-likelihoods
      r.prompt.erase(r.prompt.begin(), r.prompt.end() - static_cast<std::ptrdiff_t>(keep));
    }
    requests.push_back(std::move(r));
  }
  const auto outputs = batched<std::string>(
      requests, task.name, options,
      [&](std::span<const GenerationRequest> part) { return backend.generate(part); });

  TaskResult out;
  size_t n_match = 0;
  for (size_t i = 0; i < n; ++i) {
    const TaskSample& s = task.samples[i];
    const std::string output = cut_at_stop(outputs[i], task.stop);
    const auto extracted = extract_answer(task.extract, output);
    const std::string prediction = extracted ? normalize_answer(task.normalize, *extracted) : "";
    const bool match = extracted && prediction == s.answer;
    n_match += match;
    if (options.keep_samples) {
      out.samples.push_back({{"task", task.name},
                             {"index", s.index},
                             {"line", s.line},
                             {"prompt", s.prompt},
                             {"output", output},
                             {"extracted", extracted ? nlohmann::json(*extracted) : nullptr},
                             {"prediction", prediction},
                             {"answer", s.answer},
                             {"exact_match", match ? 1 : 0}});
    }
  }
  const double em = static_cast<double>(n_match) / static_cast<double>(n);
  out.metrics = {{"exact_match", em}, {"exact_match_stderr", stderr_of_mean(em, n)}};
  out.score = em;
  return out;
}

// Rolling windows: x = BOS ++ tokens(text). Token x[k] is predicted from the tokens before it
// that fit one pass of L tokens. The first window predicts as many tokens as fit (x[1..L]) from
// x[0]; each later one predicts the next `stride` tokens, with the L - stride (or more, at the
// end) tokens before them as context. stride = L (the default) is lm-eval-harness's
// loglikelihood_rolling; a smaller stride gives every token more context at more cost.
TaskResult perplexity(EvalBackend& backend, const TaskSpec& task, size_t n,
                      const EvalOptions& options) {
  const size_t L = static_cast<size_t>(backend.context_length());
  const size_t stride = task.stride ? static_cast<size_t>(*task.stride) : L;
  if (stride > L) {
    throw ConfigError(task_where(task) + ": stride " + std::to_string(stride) +
                      " is larger than the model's context of " + std::to_string(L) + " tokens");
  }
  const std::vector<int32_t> prefix = backend.encode("", task.add_bos);
  // Without a BOS token the first token has nothing to be predicted from and is not scored.
  const size_t s0 = std::max<size_t>(1, prefix.size());
  if (s0 > L) throw ConfigError(task_where(task) + ": the BOS prefix is longer than the context");
  std::vector<LoglikelihoodRequest> requests;
  std::vector<size_t> first(n + 1);
  std::vector<size_t> n_tokens(n, 0);
  for (size_t i = 0; i < n; ++i) {
    first[i] = requests.size();
    std::vector<int32_t> x = prefix;
    const std::vector<int32_t> tokens = backend.encode(task.samples[i].prompt, false);
    x.insert(x.end(), tokens.begin(), tokens.end());
    for (size_t s = s0, e = 0; s < x.size(); s = e) {
      e = std::min(x.size(), s == s0 ? L + 1 : s + stride);
      const size_t a = e - 1 > L ? e - 1 - L : 0;
      requests.push_back(
          {{x.begin() + static_cast<std::ptrdiff_t>(a), x.begin() + static_cast<std::ptrdiff_t>(s)},
           {x.begin() + static_cast<std::ptrdiff_t>(s),
            x.begin() + static_cast<std::ptrdiff_t>(e)}});
      n_tokens[i] += e - s;
    }
  }
  first[n] = requests.size();
  const auto results = batched<LoglikelihoodResult>(
      requests, task.name, options,
      [&](std::span<const LoglikelihoodRequest> part) { return backend.loglikelihood(part); });

  TaskResult out;
  double total_nll = 0;
  size_t token_count = 0, byte_count = 0;
  for (size_t i = 0; i < n; ++i) {
    const TaskSample& s = task.samples[i];
    double nll = 0;
    for (size_t k = first[i]; k < first[i + 1]; ++k) nll -= results[k].logprob;
    total_nll += nll;
    token_count += n_tokens[i];
    byte_count += s.prompt.size();
    if (options.keep_samples) {
      out.samples.push_back({{"task", task.name},
                             {"index", s.index},
                             {"line", s.line},
                             {"token_count", n_tokens[i]},
                             {"byte_count", s.prompt.size()},
                             {"nll", nll},
                             {"windows", first[i + 1] - first[i]}});
    }
  }
  const double per_token = token_count > 0 ? total_nll / static_cast<double>(token_count) : kNaN;
  const double bpb =
      byte_count > 0 ? total_nll / (static_cast<double>(byte_count) * std::log(2.0)) : kNaN;
  out.metrics = {{"perplexity", std::exp(per_token)},
                 {"token_count", static_cast<double>(token_count)},
                 {"total_nll", total_nll},
                 {"byte_count", static_cast<double>(byte_count)},
                 {"bits_per_byte", bpb}};
  // Higher is better: the mean log-likelihood per token (-ln perplexity), or -bits_per_byte.
  out.score = task.metric == "bits_per_byte" ? -bpb : -per_token;
  return out;
}

}  // namespace

EvalResult evaluate(EvalBackend& backend, std::span<const TaskSpec> tasks,
                    const EvalOptions& options) {
  if (options.limit && *options.limit == 0) throw ConfigError("limit must be at least 1");
  if (backend.context_length() < 1) throw ConfigError("the model's context length is not positive");
  std::set<std::string> names;
  for (const TaskSpec& t : tasks) {
    if (!names.insert(t.name).second) throw ConfigError("two tasks are named '" + t.name + "'");
  }
  EvalResult result;
  for (const TaskSpec& task : tasks) {
    const size_t n = std::min(task.samples.size(), options.limit.value_or(task.samples.size()));
    if (n == 0) throw ConfigError(task_where(task) + ": the task has no samples");
    TaskResult r;
    switch (task.kind) {
      case TaskKind::kMultipleChoice:
        r = multiple_choice(backend, task, n, options);
        break;
      case TaskKind::kGeneration:
        r = generation(backend, task, n, options);
        break;
      case TaskKind::kPerplexity:
        r = perplexity(backend, task, n, options);
        break;
    }
    r.name = task.name;
    r.kind = task.kind;
    r.n_samples = n;
    r.metric = task.metric;
    r.weight = task.weight;
    result.score += r.weight * r.score;
    result.tasks.push_back(std::move(r));
  }
  return result;
}

}  // namespace shoal
