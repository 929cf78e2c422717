#!/usr/bin/env python
"""Build the Hugging Face ``CLIPTokenizer`` files from OpenAI's CLIP BPE table.

The input is ``bpe_simple_vocab_16e6.txt.gz`` (MIT licence, OpenAI 2021), which ships with
``openai/CLIP`` and inside the ``open_clip_torch`` wheel::

    pip download --no-deps -d /tmp/oc open_clip_torch
    unzip -j /tmp/oc/open_clip_torch-*.whl 'open_clip/bpe_simple_vocab_16e6.txt.gz' -d /tmp/oc
    python scripts/tools/build_clip_tokenizer.py /tmp/oc/bpe_simple_vocab_16e6.txt.gz configs/models/sd15/tokenizer

The vocabulary is built exactly as CLIP's ``SimpleTokenizer`` does it: the 256 byte-level characters,
the same characters with ``</w>``, one entry per merge, then ``<|startoftext|>`` and ``<|endoftext|>``
(49408 entries).  The output folder gets ``vocab.json``, ``merges.txt``, ``tokenizer_config.json`` and
``special_tokens_map.json``, the layout of ``runwayml/stable-diffusion-v1-5/tokenizer``.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

NUM_MERGES = 49152 - 256 - 2
VOCAB_SIZE = 49408
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
MODEL_MAX_LENGTH = 77


def bytes_to_unicode() -> dict[int, str]:
    """CLIP / GPT-2 reversible mapping of the 256 byte values to printable unicode characters."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def build(bpe_path: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    with gzip.open(bpe_path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : NUM_MERGES + 1]]
    if len(merges) != NUM_MERGES or any(len(m) != 2 for m in merges):
        raise ValueError(f"{bpe_path}: expected {NUM_MERGES} two-symbol merge lines")
    tokens = list(bytes_to_unicode().values())
    tokens = tokens + [t + "</w>" for t in tokens]
    tokens.extend("".join(m) for m in merges)
    tokens.extend([BOS, EOS])
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE:
        raise ValueError(f"vocabulary has {len(vocab)} distinct entries, expected {VOCAB_SIZE}")
    return vocab, merges


def _special(content: str) -> dict:
    return {"content": content, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}


def write(vocab: dict[str, int], merges: list[tuple[str, str]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    with open(out / "merges.txt", "w", encoding="utf-8", newline="\n") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    special_tokens_map = {
        "bos_token": _special(BOS),
        "eos_token": _special(EOS),
        "pad_token": EOS,
        "unk_token": _special(EOS),
    }
    tokenizer_config = {
        "add_prefix_space": False,
        "bos_token": {"__type": "AddedToken", **_special(BOS)},
        "do_lower_case": True,
        "eos_token": {"__type": "AddedToken", **_special(EOS)},
        "errors": "replace",
        "model_max_length": MODEL_MAX_LENGTH,
        "pad_token": EOS,
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": {"__type": "AddedToken", **_special(EOS)},
    }
    for name, obj in (
        ("special_tokens_map.json", special_tokens_map),
        ("tokenizer_config.json", tokenizer_config),
    ):
        (out / name).write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bpe", type=Path, help="path to bpe_simple_vocab_16e6.txt.gz")
    parser.add_argument("out", type=Path, help="output tokenizer folder")
    args = parser.parse_args(argv)
    vocab, merges = build(args.bpe)
    write(vocab, merges, args.out)
    print(f"wrote {len(vocab)} tokens and {len(merges)} merges to {args.out}")


if __name__ == "__main__":
    main()
