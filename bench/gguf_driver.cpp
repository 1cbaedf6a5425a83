// shoal_gguf_bench: times shoal's engine on one GGUF file (or HF folder) as llama.cpp's side of
// gguf_bench.py is timed, and prints one JSON line:
// - prefill: one Session::prefill of a `prompt`-token sequence (logits after the last token);
// - decode: then `decode` greedy appends, batch 1.
// Token ids: 3 + (i * 7919) mod (vocab - 3), the same stream bench/gguf_bench.py gives llama.cpp.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "shoal/model.h"
#include "shoal/weights.h"

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int32_t argmax(std::span<const float> row) {
  return static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Times shoal's prefill and batch-1 greedy decode on a GGUF file");
  std::string path;
  int threads = 2, prompt = 256, decode = 64, reps = 2;
  app.add_option("model", path)->required();
  app.add_option("--threads", threads);
  app.add_option("--prompt", prompt);
  app.add_option("--decode", decode);
  app.add_option("--reps", reps);
  CLI11_PARSE(app, argc, argv);
  try {
    shoal::ModelOptions options;
    options.n_threads = threads;
    const auto model = shoal::Model::load(shoal::open_weights(path), options);
    const int64_t vocab = model.config().vocab_size;
    std::vector<int32_t> ids(static_cast<size_t>(prompt));
    for (int i = 0; i < prompt; ++i) ids[i] = static_cast<int32_t>(3 + (i * 7919LL) % (vocab - 3));

    std::vector<double> prefill_s, decode_s;
    std::vector<int32_t> generated;
    for (int r = 0; r < reps; ++r) {
      shoal::Session session(model);
      const double t0 = now_s();
      session.prefill(ids);
      int32_t next = argmax(session.next_logits());
      const double t1 = now_s();
      generated.clear();
      for (int i = 0; i < decode; ++i) {
        generated.push_back(next);
        session.append(next);
        next = argmax(session.next_logits());
      }
      decode_s.push_back(now_s() - t1);
      prefill_s.push_back(t1 - t0);
    }
    const auto list = [](const auto& v) {
      std::string s = "[";
      for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
      return s + "]";
    };
    std::printf("{\"prefill_s\": %s, \"decode_s\": %s, \"generated\": %s}\n",
                list(prefill_s).c_str(), list(decode_s).c_str(), list(generated).c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shoal_gguf_bench: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
