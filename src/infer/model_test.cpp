// The Model / Session API on a tiny random model held in memory: the KV cache and batching paths
// give the batched forward's logits, sessions rewind and continue, bad calls throw one-line
// errors. (Numerical correctness against PyTorch is tests/test_forward.py's job.)
#include "shoal/model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "infer/model_config.h"
#include "shoal/error.h"
#include "shoal/rng.h"

namespace shoal {
namespace {

using nlohmann::json;

json tiny_config() {
  return {{"architectures", {"Qwen3ForCausalLM"}},
          {"model_type", "qwen3"},
          {"hidden_size", 32},
          {"intermediate_size", 40},
          {"num_hidden_layers", 2},
          {"num_attention_heads", 4},
          {"num_key_value_heads", 2},
          {"head_dim", 8},
          {"vocab_size", 50},
          {"rms_norm_eps", 1e-5},
          {"tie_word_embeddings", true}};
}

std::unique_ptr<WeightSource> tiny_weights(DType dtype = DType::kBF16) {
  auto w = std::make_unique<MemoryWeights>(tiny_config(), "tiny");
  const ModelConfig c = parse_model_config(tiny_config(), "tiny");
  for (const auto& spec : infer::expected_tensors(c)) {
    const CounterRng rng = CounterRng(9).stream(hash_name(spec.name));
    const int64_t n = shape_numel(spec.shape);
    const bool norm = spec.name.ends_with("norm.weight");
    const double scale = spec.shape.size() == 2 ? 1.0 / std::sqrt(spec.shape[1]) : 0.2;
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      v[i] = static_cast<float>((norm ? 1.0 : 0.0) + scale * (2.0 * rng.uniform(i) - 1.0) * 1.7);
    }
    std::vector<std::byte> bytes(static_cast<size_t>(n) * dtype_size(dtype));
    from_f32(v.data(), dtype, bytes.data(), static_cast<size_t>(n));
    w->put(spec.name, dtype, spec.shape, std::move(bytes));
  }
  return w;
}

double max_rel_diff(std::span<const float> a, std::span<const float> b) {
  double d = 0.0, m = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    d = std::max(d, std::fabs(static_cast<double>(a[i]) - b[i]));
    m = std::max(m, std::fabs(static_cast<double>(b[i])));
  }
  return d / m;
}

const std::vector<int32_t> kSeq = {3, 17, 0, 49, 8, 8, 21, 5, 30, 12, 1};

TEST(Model, LoadsAndScoresPositions) {
  const Model model = Model::load(tiny_weights());
  EXPECT_EQ(model.config().arch, ModelArch::kQwen3);
  EXPECT_EQ(model.weights().describe(), "tiny");
  const ScoreRequest all{kSeq, {}};
  const ScoreRequest some{kSeq, {10, 0, 4}};
  const auto out = model.logits(std::vector<ScoreRequest>{all, some});
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].rows, 11);
  EXPECT_EQ(out[0].vocab, 50);
  ASSERT_EQ(out[1].rows, 3);
  // Rows at requested positions are those of the full matrix (the same pass computed both).
  EXPECT_LT(max_rel_diff(out[1].row(0), out[0].row(10)), 1e-6);
  EXPECT_LT(max_rel_diff(out[1].row(1), out[0].row(0)), 1e-6);
  EXPECT_LT(max_rel_diff(out[1].row(2), out[0].row(4)), 1e-6);
  // A prefix scored alone gives the prefix rows: attention is causal.
  const std::vector<int32_t> prefix(kSeq.begin(), kSeq.begin() + 5);
  const auto alone = model.logits(std::vector<ScoreRequest>{{prefix, {}}});
  for (int64_t p = 0; p < 5; ++p) EXPECT_LT(max_rel_diff(alone[0].row(p), out[0].row(p)), 1e-5);
}

TEST(Model, SessionMatchesBatchedForward) {
  const Model model = Model::load(tiny_weights());
  const auto full = model.logits(std::vector<ScoreRequest>{{kSeq, {}}})[0];
  Session s(model);
  EXPECT_THROW(s.next_logits(), Error);
  s.prefill(std::span<const int32_t>(kSeq).first(4));
  EXPECT_LT(max_rel_diff(s.next_logits(), full.row(3)), 1e-5);
  for (size_t i = 4; i < kSeq.size(); ++i) {
    s.append(kSeq[i]);
    EXPECT_LT(max_rel_diff(s.next_logits(), full.row(static_cast<int64_t>(i))), 1e-5) << i;
  }
  EXPECT_EQ(s.size(), 11);
  EXPECT_EQ(std::vector<int32_t>(s.tokens().begin(), s.tokens().end()), kSeq);

  // Rewind to a shared prefix and continue differently; then back to the original tokens.
  s.truncate(6);
  EXPECT_THROW(s.next_logits(), Error);
  s.append(kSeq[6]);
  EXPECT_LT(max_rel_diff(s.next_logits(), full.row(6)), 1e-5);
  s.clear();
  EXPECT_EQ(s.size(), 0);
  s.prefill(kSeq);
  EXPECT_LT(max_rel_diff(s.next_logits(), full.row(10)), 1e-5);
  EXPECT_THROW(s.truncate(12), ConfigError);
}

TEST(Model, SmallBatchBudgetAndMovedModel) {
  ModelOptions opt;
  opt.max_batch_tokens = 3;
  opt.n_threads = 2;
  Model model = Model::load(tiny_weights(DType::kF16), opt);
  const Model reference = Model::load(tiny_weights(DType::kF16));
  const auto want = reference.logits(std::vector<ScoreRequest>{{kSeq, {}}})[0];
  Session s(model);
  s.prefill(kSeq);  // four passes of at most 3 tokens
  EXPECT_LT(max_rel_diff(s.next_logits(), want.row(10)), 1e-5);
  const std::vector<int32_t> b = {4, 4, 4, 4};
  const auto split = model.logits(std::vector<ScoreRequest>{{kSeq, {}}, {b, {}}, {b, {2}}});
  EXPECT_LT(max_rel_diff(split[0].row(7), want.row(7)), 1e-5);
  EXPECT_LT(max_rel_diff(split[2].row(0), split[1].row(2)), 1e-5);

  const Model moved = std::move(model);  // sessions point at the model's shared state
  s.append(2);
  const std::vector<int32_t> longer = [] {
    auto v = kSeq;
    v.push_back(2);
    return v;
  }();
  const auto want2 = reference.logits(std::vector<ScoreRequest>{{longer, {}}})[0];
  EXPECT_LT(max_rel_diff(s.next_logits(), want2.row(11)), 1e-5);
}

TEST(Model, ExtendBatchesSessions) {
  const Model model = Model::load(tiny_weights());
  const std::vector<int32_t> a = {1, 2, 3}, b = {9, 8, 7, 6, 5}, c = {44};
  Session sa(model), sb(model), sc(model);
  std::vector<Session*> ptrs = {&sa, &sb, &sc};
  std::vector<std::span<const int32_t>> ids = {a, b, c};
  model.extend(ptrs, ids);
  const auto want = model.logits(std::vector<ScoreRequest>{{a, {}}, {b, {}}, {c, {}}});
  EXPECT_LT(max_rel_diff(sa.next_logits(), want[0].row(2)), 1e-5);
  EXPECT_LT(max_rel_diff(sb.next_logits(), want[1].row(4)), 1e-5);
  EXPECT_LT(max_rel_diff(sc.next_logits(), want[2].row(0)), 1e-5);

  EXPECT_THROW(
      model.extend(std::vector<Session*>{&sa, &sa}, std::vector<std::span<const int32_t>>{a, b}),
      ConfigError);
  EXPECT_THROW(model.extend(std::vector<Session*>{&sa}, std::vector<std::span<const int32_t>>{}),
               ConfigError);
  const Model other = Model::load(tiny_weights());
  EXPECT_THROW(other.extend(std::vector<Session*>{&sa}, std::vector<std::span<const int32_t>>{a}),
               ConfigError);
  EXPECT_EQ(sa.size(), 3);  // failed calls changed nothing
}

TEST(Model, BadInputs) {
  const Model model = Model::load(tiny_weights());
  const std::vector<int32_t> bad = {1, 50};
  try {
    model.logits(std::vector<ScoreRequest>{{kSeq, {}}, {bad, {}}});
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(),
                 "score request 1: token id 50 at index 1 is outside the vocabulary [0, 50)");
  }
  EXPECT_THROW(model.logits(std::vector<ScoreRequest>{{kSeq, {11}}}), ConfigError);
  EXPECT_THROW(model.logits(std::vector<ScoreRequest>{{{}, {}}}), ConfigError);
  Session s(model);
  EXPECT_THROW(s.append(-1), ConfigError);
  EXPECT_EQ(s.size(), 0);
  EXPECT_THROW(Model::load(nullptr), ConfigError);
}

TEST(Model, ObserverSeesEveryStage) {
  const Model model = Model::load(tiny_weights());
  std::vector<int> stages;
  const std::vector<int32_t> b = {4, 5};
  model.logits(std::vector<ScoreRequest>{{kSeq, {}}, {b, {}}},
               [&](int stage, std::span<const float> h, int64_t n) {
                 stages.push_back(stage);
                 EXPECT_EQ(n, 13);
                 EXPECT_EQ(h.size(), 13u * 32u);
               });
  EXPECT_EQ(stages, (std::vector<int>{0, 1, 2, 3}));
}

}  // namespace
}  // namespace shoal
