// llama.cpp's speed on a model, through node-llama-cpp, for machines without
// llama-bench (no compiler toolchain for llama.cpp, no network but the npm
// registry). bench/compare.sh uses it when $NODE_LLAMA_CPP is set.
//
//   npm install --prefix DIR node-llama-cpp      # once; prebuilt CPU libraries
//   node bench/llamacpp-node.mjs DIR MODEL.gguf [-p N] [-n N] [-r N] [-t N]
//
// Prints llama-bench-shaped JSON rows (a prompt-only row and a generation-only
// row with avg_ts in tokens/s) plus a summary object with the load time and
// per-token latency percentiles. Method, like slm bench: one warm-up run, then
// -r runs of a -p token prompt (prefill timed alone) and -n greedy tokens;
// medians over the runs. Each generated token passes through node-llama-cpp's
// JavaScript loop, so decode figures include that overhead: the P50 step is
// the fairer decode figure, and the script reports both.
import { pathToFileURL } from "node:url";
import { join } from "node:path";

function usage() {
  console.error("usage: node llamacpp-node.mjs NODE_MODULES_PREFIX MODEL.gguf [-p N] [-n N] [-r N] [-t N]");
  process.exit(2);
}
const args = process.argv.slice(2);
if (args.length < 2) usage();
const [prefix, modelPath] = args;
const opt = { p: 128, n: 64, r: 5, t: 2 };
for (let i = 2; i < args.length; i += 2) {
  const k = args[i].replace(/^-/, "");
  if (!(k in opt) || !(+args[i + 1] > 0)) usage();
  opt[k] = Math.floor(+args[i + 1]);
}

const entry = join(prefix, "node_modules", "node-llama-cpp", "dist", "index.js");
let nlc;
try {
  nlc = await import(pathToFileURL(entry).href);
} catch (e) {
  console.error(`llamacpp-node: cannot load node-llama-cpp from ${entry}: ${e.message}`);
  process.exit(1);
}

const llama = await nlc.getLlama({ gpu: false, build: "never", logLevel: "error" });
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const pct = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
};
// a synthetic prompt of ordinary token ids (the content does not change the work)
const prompt = Array.from({ length: opt.p }, (_, i) => 100 + ((i * 37) % 5000));

const loads = [], prefill = [], decode = [], steps = [];
for (let run = 0; run <= opt.r; run++) {
  let t0 = performance.now();
  const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
  const loadMs = performance.now() - t0;
  const ctx = await model.createContext({
    contextSize: opt.p + opt.n + 16, threads: opt.t, batchSize: Math.max(opt.p, 32), sequences: 1,
  });
  const seq = ctx.getSequence();
  t0 = performance.now();
  await seq.evaluateWithoutGeneratingNewTokens(prompt);
  const preMs = performance.now() - t0;
  const runSteps = [];
  let last = performance.now(), n = 0;
  for await (const _tok of seq.evaluate([prompt[opt.p - 1]], { temperature: 0 })) {
    const now = performance.now();
    runSteps.push(now - last);
    last = now;
    if (++n >= opt.n) break;
  }
  await ctx.dispose();
  await model.dispose();
  if (run === 0) continue; // warm-up
  loads.push(loadMs);
  prefill.push((opt.p / preMs) * 1000);
  const gen = runSteps.slice(1); // as slm bench: from the first token to the last
  decode.push((gen.length / gen.reduce((a, b) => a + b, 0)) * 1000);
  steps.push(...gen);
}

const p50 = pct(steps, 0.5);
console.log(JSON.stringify([
  { n_prompt: opt.p, n_gen: 0, n_threads: opt.t, avg_ts: median(prefill) },
  { n_prompt: 0, n_gen: opt.n, n_threads: opt.t, avg_ts: median(decode) },
  {
    summary: true, engine: "llama.cpp via node-llama-cpp", model: modelPath, threads: opt.t,
    load_ms: median(loads), prefill_tps: median(prefill), decode_tps: median(decode),
    decode_p50_ms: p50, decode_p99_ms: pct(steps, 0.99), decode_tps_at_p50: 1000 / p50,
  },
]));
process.exit(0);
