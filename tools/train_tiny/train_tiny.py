#!/usr/bin/python3
"""Trains the tiny Llama base and its two experts of examples/tiny, and writes their eval tasks.

  nice -n 5 /usr/bin/python3 tools/train_tiny/train_tiny.py --out examples/tiny

Stages (each a pure function of --seed on the same machine and thread count):
  1. data: the synthetic world, the held-out eval items, the task files and JSONL splits;
  2. base: pre-training on general text (facts about an invented world, small sums, counting),
     where Zel numerals appear only in passing;
  3. experts, each fine-tuned from the base with base text mixed in so that it keeps the
     general knowledge: "arith" (multi-digit addition in digits) and "zel" (Zel numerals:
     translation both ways and facts told in Zel).
The composite task, addition posed and answered in Zel, is never trained on.
"""

import argparse
import json
import math
import os
import random
import re
import sys
import time

# OpenMP workers that sleep instead of spinning at each barrier: on a machine with other work
# running, spinning workers lose their slices and a step gets ~7x slower. Set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import llama  # noqa: E402
import tasks  # noqa: E402


AUTOCAST = True


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# Streams of training lines


class Mixture:
    """Draws lines from weighted generators; each generator is a function of an rng."""

    def __init__(self, seed, parts):
        self.rng = random.Random(seed)
        self.gens = [g for g, _ in parts]
        self.weights = [w for _, w in parts]

    def line(self):
        return self.rng.choices(self.gens, self.weights)[0](self.rng)


def batches(mix, batch, seq_len, device):
    """Sequences of seq_len + 1 tokens: <s> then whole lines joined by newlines, cut at the end."""
    while True:
        rows = []
        for _ in range(batch):
            ids = [llama.BOS_ID]
            while len(ids) < seq_len + 1:
                ids += llama.encode(mix.line() + "\n")
            rows.append(ids[:seq_len + 1])
        yield torch.tensor(rows, dtype=torch.long).to(device)


def trainable(model, which):
    """Freezes all but `which` of the model; returns the trainable parameters. `which` is "all",
    "letters" (only the rows of the Zel letters in the embeddings and the head: a gradient mask,
    so Adam never moves the other rows and their delta stays zero) or a "+"-joined list of
    parts: "io" (embeddings and head), "norm" (the final norm), "blocks" (every layer) or a layer
    range such as "0-1". Experts that train different parts have deltas on different tensors."""
    io_names = ("model.embed_tokens.weight", "lm_head.weight")
    n_layers = model.cfg["num_hidden_layers"]
    layers, parts = set(), set(which.split("+"))
    for part in list(parts):
        if part == "blocks":
            layers |= set(range(n_layers))
        elif part[0].isdigit():
            lo, _, hi = part.partition("-")
            layers |= set(range(int(lo), int(hi or lo) + 1))
        elif part not in ("all", "letters", "io", "norm", "mlp_a", "mlp_b"):
            raise SystemExit(f"unknown part '{part}' in '{which}'")

    mlp_half = {"mlp_a": 0, "mlp_b": 1} if parts & {"mlp_a", "mlp_b"} else {}
    f = model.cfg["intermediate_size"]

    def neuron_mask(name, p):
        """For mlp_a / mlp_b: 1 on the rows (gate, up) or columns (down) of that half of every
        layer's MLP neurons. Neurons add their outputs to the residual stream, so experts that
        train different neurons have deltas that add up with little interference."""
        halves = [mlp_half[q] for q in parts if q in mlp_half]
        if not halves or ".mlp." not in name:
            return None
        m = torch.zeros(f)
        for h in halves:
            m[h * f // 2:(h + 1) * f // 2] = 1.0
        return m[:, None] if not name.endswith("down_proj.weight") else m[None, :]

    def wanted(name):
        if "all" in parts:
            return True
        if mlp_half and ".mlp." in name:
            return True
        if name in io_names:
            return "io" in parts or "letters" in parts
        if name == "model.norm.weight":
            return "norm" in parts or "blocks" in parts
        return int(name.split(".")[2]) in layers

    out = []
    for key, p in model.params.items():
        train = wanted(key.replace("__", "."))
        p.requires_grad_(train)
        if train:
            out.append(p)
        if train and "letters" in parts and key.replace("__", ".") in io_names:
            mask = torch.zeros(p.shape[0], 1, device=p.device)
            mask[[ord(c) for c in data.ZEL_DIGITS]] = 1.0
            p.register_hook(lambda g, m=mask: g * m)
        mask = neuron_mask(key.replace("__", "."), p) if train else None
        if mask is not None:
            p.register_hook(lambda g, m=mask.to(p.device): g * m)
    return out


def train(model, stream, steps, lr, warmup, weight_decay, label, min_lr_frac=0.1,
          params=None, decay_to=None):
    """AdamW with warm-up and cosine decay. With `decay_to` (the base's weights), the decoupled
    weight decay pulls towards those weights instead of towards zero (L2-SP)."""
    params = params or list(model.parameters())
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95),
                            weight_decay=0.0 if decay_to else weight_decay)
    anchors = None
    if decay_to:
        anchors = [decay_to[k.replace("__", ".")].to(p.device) for k, p in model.params.items()
                   if p.requires_grad]
        params = [p for p in model.params.values() if p.requires_grad]
    t0 = time.time()
    avg = None
    for step in range(steps):
        frac = step / max(1, steps - 1)
        scale = min(1.0, (step + 1) / warmup) * \
            (min_lr_frac + (1 - min_lr_frac) * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr * scale
        x = next(stream)
        # bf16 autocast: the matrix products run on the CPU's bf16 units (AMX where present),
        # about 20x faster here than f32; weights and optimiser state stay f32.
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=AUTOCAST):
            logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                               x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if anchors:
            with torch.no_grad():
                for p, a in zip(params, anchors):
                    p.sub_(lr * scale * weight_decay * (p - a))
        avg = loss.item() if avg is None else 0.98 * avg + 0.02 * loss.item()
        if step % 100 == 0 or step == steps - 1:
            log(f"{label} step {step}/{steps} loss {avg:.3f} ({time.time() - t0:.0f} s)")
    return time.time() - t0


# ---------------------------------------------------------------------------------------------
# A quick greedy check in PyTorch (progress only; the published numbers come from shoal eval)


@torch.no_grad()
def greedy_accuracy(model, items, chain=False, limit=None):
    """Exact match of greedy answers, as the task files score them: cut at a newline or full stop
    (and a comma for the single-step tasks); a chain's answer is the Zel number it ends on.
    Prompts of one length are decoded together."""
    model.eval()
    items = items[:limit] if limit else items
    stops = {ord("\n"), ord(".")} | (set() if chain else {ord(",")})
    groups = {}
    for it in items:
        ids = [llama.BOS_ID] + llama.encode(it["prompt"])
        groups.setdefault(len(ids), []).append((ids, it["answer"]))
    hits = 0
    for group in groups.values():
        x = torch.tensor([ids for ids, _ in group], device=next(model.parameters()).device)
        for _ in range(24 if chain else 8):
            x = torch.cat([x, model(x)[:, -1].argmax(-1, keepdim=True)], dim=1)
        for row, (ids, answer) in zip(x.tolist(), group):
            out = []
            for t in row[len(ids):]:
                if t >= 256 or t in stops:
                    break
                out.append(t)
            text = llama.decode(out).strip()
            if chain:
                m = re.search(r"= ([A-Z]+)$", text)
                text = m.group(1) if m else None
            hits += text == answer
    model.train()
    return hits / max(1, len(items))


def quick_report(model, splits, label, limit=60):
    accs = {name: greedy_accuracy(model, s["dev"], chain=name == "composite", limit=limit)
            for name, s in tasks.eval_splits(splits).items()}
    log(f"{label}: " + " ".join(f"{k}={v:.2f}" for k, v in accs.items()))
    return accs


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--out", required=True, help="output folder (examples/tiny)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--intermediate", type=int, default=384)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--base-steps", type=int, default=1000)
    ap.add_argument("--base-lr", type=float, default=2e-3)
    ap.add_argument("--arith-lr", type=float, default=1e-3)
    ap.add_argument("--zel-lr", type=float, default=1e-2)
    ap.add_argument("--decay-to-base", type=float, default=1.0,
                    help="experts' decoupled weight decay towards the base weights (L2-SP)")
    ap.add_argument("--base-share", type=float, default=0.4,
                    help="share of base text in each expert's fine-tuning data")
    ap.add_argument("--arith-params", default="blocks",
                    help="what the arith expert trains (see trainable(): all, blocks, io, "
                         "letters, norm, layer ranges such as 2-3, joined with +)")
    ap.add_argument("--zel-params", default="letters", help="what the zel expert trains")
    ap.add_argument("--arith-steps", type=int, default=1000)
    ap.add_argument("--zel-steps", type=int, default=600)
    ap.add_argument("--operand-max", type=int, default=tasks.OPERAND_MAX)
    ap.add_argument("--base-zel-text", type=float, default=tasks.BASE_ZEL_TEXT,
                    help="share of the base's lines that are its numeric sentences in Zel")
    ap.add_argument("--no-autocast", action="store_true",
                    help="train in f32 instead of bf16 autocast (slower)")
    ap.add_argument("--dtype", default="BF16", choices=["BF16", "F32"])
    ap.add_argument("--device", default="cpu", help="cpu (the published models) or cuda (sweeps)")
    ap.add_argument("--stages", default="data,base,experts")
    ap.add_argument("--experts", default="arith,zel", help="which experts to train")
    ap.add_argument("--quick-merges", action="store_true",
                    help="after training, print the PyTorch greedy check of simple merges")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    global AUTOCAST
    AUTOCAST = not args.no_autocast
    if args.device == "cpu":
        torch.use_deterministic_algorithms(True)
    tasks.OPERAND_MAX = args.operand_max
    tasks.BASE_ZEL_TEXT = args.base_zel_text
    dev = torch.device(args.device)
    stages = set(args.stages.split(","))
    t_start = time.time()

    world = data.World(args.seed)
    split = tasks.make_splits(world, args.seed)
    if "data" in stages:
        tasks.write_task_files(args.out, split)
        log(f"wrote tasks to {args.out}/tasks")

    cfg = llama.hf_config(args.hidden, args.layers, args.heads, args.intermediate,
                          max_pos=256)
    base_dir = os.path.join(args.out, "base")
    times = {}
    if "base" in stages:
        torch.manual_seed(args.seed)
        model = llama.Llama(cfg).to(dev)
        mix = Mixture(args.seed * 1000 + 1, tasks.base_parts(world, split))
        times["base"] = train(model, batches(mix, args.batch, args.seq_len, dev), args.base_steps,
                              args.base_lr, 100, 0.1, "base")
        llama.save_folder(base_dir, cfg, model.state(), args.dtype)
        quick_report(model, split, "base")

    if "experts" in stages:
        base_state = llama.read_safetensors(os.path.join(base_dir, "model.safetensors"))
        for k, (name, parts) in enumerate(tasks.expert_parts(world, split, args.base_share)):
            if name not in args.experts.split(","):
                continue
            torch.manual_seed(args.seed * 100 + k)
            model = llama.Llama(cfg).to(dev)
            model.load_state(base_state)
            mix = Mixture(args.seed * 1000 + 10 + k, parts)
            which = {"arith": args.arith_params, "zel": args.zel_params}[name]
            steps = {"arith": args.arith_steps, "zel": args.zel_steps}[name]
            lr = {"arith": args.arith_lr, "zel": args.zel_lr}[name]
            times[name] = train(model, batches(mix, args.batch, args.seq_len, dev), steps,
                                lr, 30, args.decay_to_base, name, 0.0,
                                params=trainable(model, which),
                                decay_to=base_state if args.decay_to_base > 0 else None)
            llama.save_folder(os.path.join(args.out, name), cfg, model.state(), args.dtype)
            quick_report(model, split, name)

    if args.quick_merges:
        import quick_merge
        quick_merge.report(args.out, cfg, split, quick_report, dev)

    log("times: " + json.dumps({k: round(v) for k, v in times.items()}) +
        f", total {time.time() - t_start:.0f} s")


if __name__ == "__main__":
    main()
