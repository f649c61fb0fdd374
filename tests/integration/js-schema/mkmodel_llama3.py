#!/usr/bin/env python3
"""A tiny random llama model with the real Llama 3 vocabulary (byte-level
BPE, 128256 tokens), written with ../shared/tools/mkmodel.py's writer and a
preset of small dimensions, for tests of constrained output over a large
byte-level vocabulary.

usage: mkmodel_llama3.py SHARED_DIR OUT.gguf [SEED]"""
import os
import sys

shared, out = sys.argv[1], sys.argv[2]
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1
sys.path.insert(0, os.path.join(shared, "tools"))
import mkmodel  # noqa: E402

mkmodel.PRESETS["tiny-llama3"] = dict(arch="llama", n_embd=64, n_layer=1, n_head=2, n_head_kv=2,
                                      n_ff=128, vocab="llama3", n_vocab=128256, tied=True,
                                      rope_base=500000.0, n_ctx=1024, eps=1e-5)
tok = os.path.join(shared, "fixtures", "tokenizers", "llama3", "tokenizer.json")
# larger weights than the presets' 0.02, so that the distribution is not flat
mkmodel.write_model("tiny-llama3", out, seed, tok, std=0.25)
