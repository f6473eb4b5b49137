"""The offline CLIP BPE tokenizer."""

from __future__ import annotations

import torch

from avbridge.models.binders.tokenizer import END_TOKEN, START_TOKEN, ClipTokenizer, clean_text


def test_matches_reference_ids(small_fixture):
    ids = ClipTokenizer()(small_fixture["meta"]["texts"])
    assert ids.dtype == torch.long
    assert torch.equal(ids, small_fixture["tensors"]["tokens"])


def test_truncation_keeps_the_end_token():
    ids = ClipTokenizer(context_length=8)(["one two three four five six seven eight nine ten"])
    assert ids.shape == (1, 8)
    assert ids[0, 0] == START_TOKEN and ids[0, -1] == END_TOKEN
    assert (ids[0, 1:-1] != 0).all()


def test_cleaning_and_padding():
    assert clean_text("  A&amp;B \n\t Dog ") == "a&b dog"
    tok = ClipTokenizer()
    a, b = tok(["a dog", "A   DOG"])
    assert torch.equal(a, b)
    assert a.tolist()[:4] == [START_TOKEN, 320, 1929, END_TOKEN]
    assert (a[4:] == 0).all()
