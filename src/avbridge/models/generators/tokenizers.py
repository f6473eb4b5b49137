"""Word-level tokenizers built offline for the tiny presets.

Real checkpoints ship their own tokenizer (RoBERTa BPE for CLAP, CLIP BPE for Stable
Diffusion) and are loaded with ``AutoTokenizer``. The tiny presets cannot download one, so
they get a lower-cased word-level tokenizer over a fixed vocabulary, wrapped in
``PreTrainedTokenizerFast`` so that ``save_pretrained`` / ``AutoTokenizer.from_pretrained``
round-trip it like any other tokenizer. Unknown words map to the unknown token.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

# A small vocabulary that covers the embedded world's captions and common sound/scene words.
DEFAULT_WORDS: tuple[str, ...] = tuple(
    """
    a an the of and with in on at to from by for is are it its this that some two three one
    small big large tiny huge medium little loud quiet soft high low deep bright dark fast slow
    red green blue yellow orange purple pink white black grey gray brown cyan magenta
    ball balls cube square circle triangle star ring bar line dot disc block blob shape shapes
    bouncing bounce bounces rolling rolls falling falls spinning spins moving moves flashing
    flashes blinking blinks sliding slides hitting hits drop drops pulsing pulses flying flies
    waving wave waves shaking shakes tapping taps ringing rings buzzing buzzes humming hums
    beep beeps beeping click clicks clicking knock knocks knocking drum drums drumming bell bells
    whistle whistles whistling chirp chirps chirping siren sirens tone tones noise noisy
    hum buzz crash crashes thud thuds bang bangs pop pops pops splash splashes rain water wind
    engine car cars train dog dogs barking bark cat meow bird birds singing sing song music
    piano guitar violin speech talking man woman people crowd child laughing clapping applause
    footsteps door glass metal wood wooden plastic paper fire crackling thunder ocean river
    stream street city traffic motor machine vehicle helicopter airplane plane boat horn alarm
    left right up down across around over under background foreground center middle corner
    screen scene video sound audio picture image frame
    """.split()
)

Flavour = Literal["roberta", "clip"]


def build_word_tokenizer(
    words: Iterable[str] | None = None,
    flavour: Flavour = "roberta",
    model_max_length: int = 16,
) -> PreTrainedTokenizerFast:
    """A lower-cased word-level tokenizer with RoBERTa-style or CLIP-style special tokens.

    ``roberta`` (for CLAP text encoders): ``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3,
    sequences ``<s> ... </s>``. ``clip`` (for CLIP text encoders): ``<|startoftext|>``=0,
    ``<|endoftext|>``=1 (also the padding token, as in Stable Diffusion), ``<|unk|>``=2.
    Word ids follow in the order given (duplicates dropped), so the vocabulary is deterministic.
    """
    if flavour == "roberta":
        bos, eos, pad, unk = "<s>", "</s>", "<pad>", "<unk>"
        specials = [bos, pad, eos, unk]
    elif flavour == "clip":
        bos, eos, unk = "<|startoftext|>", "<|endoftext|>", "<|unk|>"
        pad = eos
        specials = [bos, eos, unk]
    else:
        raise ValueError(f"unknown tokenizer flavour {flavour!r}")
    vocab: dict[str, int] = {tok: i for i, tok in enumerate(specials)}
    for w in DEFAULT_WORDS if words is None else words:
        w = w.lower().strip()
        if w and w not in vocab:
            vocab[w] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, vocab[bos]), (eos, vocab[eos])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        unk_token=unk,
        model_max_length=model_max_length,
    )
