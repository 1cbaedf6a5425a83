// Tokenizer::from_gguf: reads a GGUF file's tokenizer.ggml.* metadata into a TokenizerVocab
// (defaults as llama.cpp's: a "llama" vocabulary adds BOS and a space prefix unless told not to).
// Kept apart from tokenizer_vocab.cpp so that from_vocab links without the GGUF reader.
#include "infer/tokenizer_impl.h"
#include "io/json_util.h"
#include "shoal/error.h"
#include "shoal/gguf.h"

namespace shoal {

namespace {

[[noreturn]] void fail(const GgufFile& f, const std::string& key, const std::string& what) {
  throw FormatError(f.path().string() + ": " + key + ": " + what);
}

const GgufArray& array(const GgufFile& f, const char* key, GgufValueType type) {
  const GgufArray* a = f.get_array(key);
  if (a == nullptr) fail(f, key, "missing");
  if (a->type != type) fail(f, key, "has elements of the wrong type");
  return *a;
}

int64_t as_integer(const GgufValue& v) {
  if (const auto* u = std::get_if<uint64_t>(&v)) return static_cast<int64_t>(*u);
  if (const auto* i = std::get_if<int64_t>(&v)) return *i;
  return 0;
}

// A token id key; absent, or GGUF's "none" (0xFFFFFFFF, or any negative value), gives -1.
int32_t gguf_token_id(const GgufFile& f, const char* key) {
  const std::optional<int64_t> v = f.get_int(key);
  if (!v || *v < 0 || *v == 0xFFFFFFFFll) return -1;
  if (*v > INT32_MAX) fail(f, key, std::to_string(*v) + " is not a token id");
  return static_cast<int32_t>(*v);
}

}  // namespace

Tokenizer Tokenizer::from_gguf(const GgufFile& f) {
  TokenizerVocab v;
  v.source = f.path().string();
  const std::optional<std::string> model = f.get_string("tokenizer.ggml.model");
  if (!model) fail(f, "tokenizer.ggml.model", "missing (the file has no tokenizer)");
  v.model = *model;

  const GgufArray& tokens = array(f, "tokenizer.ggml.tokens", GgufValueType::kString);
  v.tokens.reserve(tokens.values.size());
  for (const GgufValue& t : tokens.values) v.tokens.push_back(std::get<std::string>(t));

  if (f.get_array("tokenizer.ggml.scores") != nullptr) {
    const GgufArray& scores = array(f, "tokenizer.ggml.scores", GgufValueType::kF32);
    v.scores.reserve(scores.values.size());
    for (const GgufValue& s : scores.values)
      v.scores.push_back(static_cast<float>(std::get<double>(s)));
  }
  if (const GgufArray* types = f.get_array("tokenizer.ggml.token_type")) {
    using T = GgufValueType;
    const T t = types->type;
    const bool integers = t == T::kU8 || t == T::kI8 || t == T::kU16 || t == T::kI16 ||
                          t == T::kU32 || t == T::kI32 || t == T::kU64 || t == T::kI64;
    if (!integers) fail(f, "tokenizer.ggml.token_type", "expected integers");
    v.token_types.reserve(types->values.size());
    for (const GgufValue& t : types->values)
      v.token_types.push_back(static_cast<int32_t>(as_integer(t)));
  }
  if (f.get_array("tokenizer.ggml.merges") != nullptr) {
    const GgufArray& merges = array(f, "tokenizer.ggml.merges", GgufValueType::kString);
    v.merges.reserve(merges.values.size());
    for (const GgufValue& m : merges.values) v.merges.push_back(std::get<std::string>(m));
  }
  v.pre = f.get_string("tokenizer.ggml.pre").value_or("default");

  v.bos_id = gguf_token_id(f, "tokenizer.ggml.bos_token_id");
  v.eos_id = gguf_token_id(f, "tokenizer.ggml.eos_token_id");
  v.eot_id = gguf_token_id(f, "tokenizer.ggml.eot_token_id");
  v.unk_id = gguf_token_id(f, "tokenizer.ggml.unknown_token_id");
  const bool spm = v.model == "llama";
  v.add_bos = f.get_bool("tokenizer.ggml.add_bos_token").value_or(spm);
  v.add_eos = f.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
  v.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix").value_or(spm);
  v.chat_template = f.get_string("tokenizer.chat_template").value_or("");
  return from_vocab(v);
}

}  // namespace shoal
