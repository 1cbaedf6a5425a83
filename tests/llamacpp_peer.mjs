// llama.cpp as an independent peer, through node-llama-cpp's prebuilt CPU build (no compiler, no
// download): loads a GGUF file and answers one JSON request read from stdin with one JSON
// object on stdout. Requests:
//   {"op": "tokenize", "texts": [...]}           -> {"ids": [[...], ...]}  (BOS as the vocabulary
//                                                   says; special-token text parsed, as HF does)
//   {"op": "generate", "prompts": [...], "n": 32, "top": 10, "kv_f32": false}
//       -> {"results": [{"prompt_ids", "generated_ids", "top": [{"id", "p"}], "margins"}]}: greedy
//          ids, the top next-token probabilities after the prompt (no sampling options applied),
//          and for each generated token the two highest probabilities of its step
//   {"op": "bench", "prompt_tokens": 256, "gen_tokens": 64, "vocab": 32000, "reps": 2,
//    "threads": 2} -> {"prefill_s": [...], "decode_s": [...], "generated": [...]}
// Usage: node llamacpp_peer.mjs MODEL.gguf < request.json. The package is found in
// $SHOAL_LLAMACPP_NPM (the folder holding node_modules/node-llama-cpp).
import fs from "node:fs";
import path from "node:path";
import {pathToFileURL} from "node:url";

const root = process.env.SHOAL_LLAMACPP_NPM;
if (!root) throw new Error("SHOAL_LLAMACPP_NPM is not set (scripts/install-llamacpp-npm.sh)");
const entry = path.join(root, "node_modules", "node-llama-cpp", "dist", "index.js");
if (!fs.existsSync(entry)) throw new Error(`node-llama-cpp is not installed in ${root}`);
const {getLlama} = await import(pathToFileURL(entry).href);

const request = JSON.parse(fs.readFileSync(0, "utf8"));
const threads = request.threads ?? 2;
const llama = await getLlama({gpu: false, build: "never", skipDownload: true, logLevel: "error",
                              maxThreads: threads});
const model = await llama.loadModel({modelPath: process.argv[2], gpuLayers: 0});

// The KV cache in F32 (llama.cpp's -ctk f32 -ctv f32) when asked: its default F16 cache rounds
// keys and values, which shoal's engine does not.
const kvCache = request.kv_f32 ? {experimentalKvCacheKeyType: "F32",
                                  experimentalKvCacheValueType: "F32"} : {};

async function generate(prompt, n, top) {
  const context = await model.createContext({contextSize: 512, threads, batchSize: 512,
                                             ...kvCache});
  const sequence = context.getSequence();
  const promptIds = Array.from(model.tokenize(prompt, true));
  const bos = model.tokens.bos;
  const addBos = model.fileInfo.metadata?.tokenizer?.ggml?.add_bos_token ?? true;
  const ids = addBos && bos != null && promptIds[0] !== bos ? [bos, ...promptIds] : promptIds;
  const generated = [];
  const margins = [];  // per generated token: the two highest probabilities
  let probs = null;
  for await (const out of sequence.evaluateWithMetadata(ids, {probabilities: true},
                                                         {temperature: 0})) {
    if (probs === null) {
      probs = [...out.probabilities.entries()].sort((a, b) => b[1] - a[1]).slice(0, top)
          .map(([id, p]) => ({id, p}));
    }
    const [p1, p2] = [...out.probabilities.values()].sort((a, b) => b - a);
    margins.push([p1, p2 ?? 0]);
    generated.push(out.token);
    if (generated.length >= n || model.isEogToken(out.token)) break;
  }
  await context.dispose();
  return {prompt_ids: ids, generated_ids: generated, top: probs, margins};
}

// Prefill: the prompt evaluated and the first token picked; decode: `genTokens` more greedy
// tokens, one forward pass each (batch 1), from the same generator.
async function bench(promptTokens, genTokens, vocab, reps) {
  const prompt = [];
  for (let i = 0; i < promptTokens; ++i) prompt.push(3 + ((i * 7919) % (vocab - 3)));
  const out = {prefill_s: [], decode_s: [], generated: []};
  for (let r = 0; r < reps; ++r) {
    const context = await model.createContext({contextSize: promptTokens + genTokens + 16,
                                               threads, batchSize: promptTokens, ...kvCache});
    const sequence = context.getSequence();
    const gen = sequence.evaluate(prompt, {temperature: 0});
    const t0 = performance.now();
    let step = await gen.next();
    const t1 = performance.now();
    const generated = [step.value];
    for (let i = 0; i < genTokens; ++i) {
      step = await gen.next();
      generated.push(step.value);
    }
    const t2 = performance.now();
    await gen.return();
    await context.dispose();
    out.prefill_s.push((t1 - t0) / 1000);
    out.decode_s.push((t2 - t1) / 1000);
    out.generated = generated.slice(0, genTokens);
  }
  return out;
}

let reply;
if (request.op === "tokenize") {
  reply = {ids: request.texts.map((t) => {
    const ids = Array.from(model.tokenize(t, true));
    const bos = model.tokens.bos;
    const addBos = model.fileInfo.metadata?.tokenizer?.ggml?.add_bos_token ?? true;
    return addBos && bos != null ? [bos, ...ids] : ids;
  })};
} else if (request.op === "generate") {
  const results = [];
  for (const p of request.prompts) results.push(await generate(p, request.n ?? 32, request.top ?? 10));
  reply = {results};
} else if (request.op === "bench") {
  reply = await bench(request.prompt_tokens, request.gen_tokens, request.vocab, request.reps ?? 1);
} else {
  throw new Error(`unknown op ${request.op}`);
}
process.stdout.write(JSON.stringify(reply) + "\n");
await model.dispose();
await llama.dispose();
