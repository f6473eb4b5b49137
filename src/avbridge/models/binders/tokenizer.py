"""The CLIP byte-level BPE tokenizer (as used by ImageBind's text branch), offline.

The merges file ``bpe_simple_vocab_16e6.txt.gz`` ships with avbridge (MIT licence, see
``bpe_simple_vocab_16e6_LICENSE.txt`` next to it). Cleaning is html-unescape, whitespace
collapse and lower-casing (no ftfy: it only repairs mojibake, which our prompts lack).
Rows are ``<start> tokens... <end>`` zero-padded to the context length; longer texts
are cut so that the end token is kept.
"""

from __future__ import annotations

import gzip
import html
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import cast

import regex
import torch

VOCAB_PATH = Path(__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
START_TOKEN = 49406
END_TOKEN = 49407
_PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE,
)


@lru_cache
def _byte_alphabet() -> dict[int, str]:
    """Reversible map bytes -> printable unicode characters (GPT-2 / CLIP convention)."""
    printable = [
        *range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)
    ]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


@lru_cache
def _load_vocab(path: str) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    lines = gzip.open(path, "rt", encoding="utf-8").read().split("\n")
    # Line 0 is a header; CLIP keeps the first 49152 - 256 - 2 merges; each merge line is "a b".
    merges = [cast(tuple[str, str], tuple(line.split())) for line in lines[1 : 49152 - 256 - 2 + 1]]
    base = list(_byte_alphabet().values())
    vocab = base + [c + "</w>" for c in base] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(vocab)}, {m: i for i, m in enumerate(merges)}


def clean_text(text: str) -> str:
    """html-unescape twice, collapse whitespace, strip, lower-case."""
    text = html.unescape(html.unescape(text)).strip()
    return " ".join(text.split()).lower()


class ClipTokenizer:
    """Texts -> (B, context_length) int64 ids, identical to CLIP's SimpleTokenizer."""

    def __init__(self, context_length: int = 77, vocab_path: str | Path = VOCAB_PATH):
        self.context_length = context_length
        self.encoder, self.ranks = _load_vocab(str(vocab_path))
        self.byte_map = _byte_alphabet()
        self._cache: dict[str, list[str]] = {}

    def _bpe(self, word: str) -> list[str]:
        if word in self._cache:
            return self._cache[word]
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            pairs = [(parts[i], parts[i + 1]) for i in range(len(parts) - 1)]
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(parts):
                if i < len(parts) - 1 and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        self._cache[word] = parts
        return parts

    def encode(self, text: str) -> list[int]:
        """Ids of one text, without start/end tokens."""
        ids: list[int] = []
        for piece in _PATTERN.findall(clean_text(text)):
            word = "".join(self.byte_map[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self._bpe(word))
        return ids

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = ([START_TOKEN] + self.encode(text))[: self.context_length - 1] + [END_TOKEN]
            out[row, : len(ids)] = torch.tensor(ids)
        return out
