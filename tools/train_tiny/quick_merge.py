"""Design aid: the simple merges computed in PyTorch, checked with the quick greedy report.
(The published numbers come from `shoal merge` and `shoal eval`.)"""

import os

import torch

import llama


def ties(base, deltas, weights):
    """TIES with density 1: elect the sign of the weighted sum, average the agreeing deltas."""
    stacked = torch.stack([w * d for w, d in zip(weights, deltas)])
    sign = torch.sign(stacked.sum(0))
    agree = (torch.sign(stacked) == sign) & (stacked != 0)
    wsum = sum(w * agree[i].float() for i, w in enumerate(weights))
    merged = (stacked * agree).sum(0) / wsum.clamp(min=1e-12)
    return base + merged


def report(out, cfg, splits, quick_report, device, names=("arith", "zel")):
    def load(n):
        return llama.read_safetensors(os.path.join(out, n, "model.safetensors"))

    base = load("base")
    experts = [load(n) for n in names]
    merges = {
        "linear": lambda k: 0.5 * experts[0][k] + 0.5 * experts[1][k],
        "task_arith": lambda k: experts[0][k] + experts[1][k] - base[k],
        "ties": lambda k: ties(base[k], [e[k] - base[k] for e in experts], [1.0, 1.0]),
    }
    for label, fn in merges.items():
        model = llama.Llama(cfg).to(device)
        model.load_state({k: fn(k).to(torch.bfloat16).float() for k in base})
        quick_report(model, splits, label)
