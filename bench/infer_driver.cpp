// shoal_infer_bench: times shoal's inference engine on one model folder and prints one JSON line.
// - prefill: Model::logits over `batch` sequences of `tokens` ids, logits at every position
//   (what log-likelihood evaluation needs);
// - decode: one Session, a short prompt, then `decode` greedy appends (batch 1).
// Token ids are a fixed pseudo-random stream, so infer_bench.py can feed PyTorch the same ones.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <CLI/CLI.hpp>

#include "shoal/model.h"
#include "shoal/weights.h"

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Same generator as infer_bench.py's prompt_ids: (i * 2654435761 + 12345) mod vocab.
std::vector<int32_t> prompt_ids(int64_t n, int64_t offset, int64_t vocab) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    ids[static_cast<size_t>(i)] =
        static_cast<int32_t>(((offset + i) * 2654435761LL + 12345) % vocab);
  return ids;
}

int32_t argmax(std::span<const float> row) {
  return static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Times shoal's prefill (logits at every position) and batch-1 greedy decode");
  std::string model_dir;
  int threads = 2, batch = 8, tokens = 256, decode = 64, prompt = 16, reps = 3;
  bool f32_weights = false;
  bool bf16_activations = false;
  app.add_option("model", model_dir)->required();
  app.add_option("--threads", threads);
  app.add_option("--batch", batch);
  app.add_option("--tokens", tokens);
  app.add_option("--decode", decode);
  app.add_option("--prompt", prompt);
  app.add_option("--reps", reps);
  app.add_flag("--f32-weights", f32_weights);
  app.add_flag("--bf16-activations", bf16_activations);
  CLI11_PARSE(app, argc, argv);
  try {
    shoal::ModelOptions options;
    options.n_threads = threads;
    options.f32_weights = f32_weights;
    options.bf16_activations = bf16_activations;
    const double t_load = now_s();
    const auto model = shoal::Model::load(shoal::open_folder_weights(model_dir), options);
    const double load_s = now_s() - t_load;
    const int64_t vocab = model.config().vocab_size;

    std::vector<std::vector<int32_t>> seqs;
    for (int b = 0; b < batch; ++b) seqs.push_back(prompt_ids(tokens, int64_t{b} * tokens, vocab));
    std::vector<shoal::ScoreRequest> requests;
    for (const auto& s : seqs) requests.push_back({s, {}});

    std::vector<double> prefill_runs, decode_runs;
    double checksum = 0;
    for (int r = 0; r < reps; ++r) {
      const double t0 = now_s();
      const auto out = model.logits(requests);
      prefill_runs.push_back(now_s() - t0);
      checksum = out[0].data[0] + out.back().data.back();
    }
    std::vector<int32_t> generated;
    for (int r = 0; r < reps; ++r) {
      shoal::Session session(model);
      session.prefill(prompt_ids(prompt, 0, vocab));
      int32_t next = argmax(session.next_logits());
      generated.clear();
      const double t0 = now_s();
      for (int i = 0; i < decode; ++i) {
        generated.push_back(next);
        session.append(next);
        next = argmax(session.next_logits());
      }
      decode_runs.push_back(now_s() - t0);
    }
    auto list = [](const std::vector<double>& v) {
      std::string s = "[";
      for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
      return s + "]";
    };
    std::string gen = "[";
    for (size_t i = 0; i < generated.size(); ++i)
      gen += (i ? "," : "") + std::to_string(generated[i]);
    gen += "]";
    std::printf(
        "{\"load_s\": %.4f, \"prefill_s\": %s, \"decode_s\": %s, \"batch\": %d, \"tokens\": %d, "
        "\"decode\": %d, \"prompt\": %d, \"checksum\": %.6f, \"generated\": %s}\n",
        load_s, list(prefill_runs).c_str(), list(decode_runs).c_str(), batch, tokens, decode,
        prompt, checksum, gen.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shoal_infer_bench: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
