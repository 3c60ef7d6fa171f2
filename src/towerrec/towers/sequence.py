"""Sequence encoders: a user as the state after reading their items in order.

Every encoder maps item vectors `x [batch, L, dim]` of a left-padded sequence (newest item in the
last column, see `towerrec.data.sequences`) and `valid [batch, L]` (False on padding) to outputs
`[batch, L, dim]` where position t depends only on positions <= t. Output t is the user state
after item t, trained to predict item t + 1; the last column is the state used for serving.
Padded positions produce finite values that callers ignore. (`TransformerEncoder(causal=False)`
attends both ways, for BERT4Rec.)

- `GRUEncoder`: GRU4Rec (Hidasi et al., ICLR 2016; Hidasi & Karatzoglou, CIKM 2018).
- `CausalConvEncoder`: NextItNet's dilated residual causal convolutions (Yuan et al., WSDM 2019).
- `TransformerEncoder`: SASRec's causal self-attention (Kang & McAuley, ICDM 2018), pre- or
  post-LayerNorm (post-LN as in RecBole's SASRec, pre-LN as in the original code).
- `HSTUEncoder`: the HSTU block of "Actions Speak Louder than Words" (Zhai et al., ICML 2024):
  pointwise SiLU attention divided by the window length, gated by U, with learned relative
  position and (log2-bucketed) relative time biases.

They are plain `nn.Module`s, usable by any tower (e.g. a two-tower user side over item ids).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def causal_mask(valid: torch.Tensor) -> torch.Tensor:
    """[batch, 1, L, L] bool: query t may attend key s iff s <= t and s is not padding.

    The diagonal is always allowed so that padded queries never have an empty row (no NaN).
    """
    L = valid.shape[1]
    tri = torch.ones(L, L, dtype=torch.bool, device=valid.device).tril()
    eye = torch.eye(L, dtype=torch.bool, device=valid.device)
    return ((tri[None] & valid[:, None, :]) | eye[None])[:, None]


def padding_mask(valid: torch.Tensor) -> torch.Tensor:
    """[batch, 1, L, L] bool for bidirectional attention: any non-padding key (and the diagonal)."""
    L = valid.shape[1]
    eye = torch.eye(L, dtype=torch.bool, device=valid.device)
    return (valid[:, None, :] | eye[None])[:, None]


# ---- GRU ------------------------------------------------------------------------------------------
class GRUEncoder(nn.Module):
    """GRU4Rec: embeddings -> dropout -> GRU(hidden) -> linear back to `dim`.

    Left padding would feed padding through the recurrence, so each row is rotated to put its
    items first (right padding), run, and rotated back: two gathers, no packing.
    """

    def __init__(self, dim: int, hidden: int = 128, layers: int = 1, dropout: float = 0.3) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(dim, hidden, num_layers=layers, batch_first=True, bias=False)
        self.out = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, valid: torch.Tensor, last: bool = False) -> torch.Tensor:
        """[B, L, dim] -> [B, L, dim]; `last`: the newest position's state only, [B, 1, dim]."""
        L = x.shape[1]
        n_pad = (~valid).sum(dim=1, keepdim=True)                           # [B, 1]
        cols = torch.arange(L, device=x.device)[None, :]
        to_left = ((cols + n_pad) % L)[..., None].expand_as(x)              # items first
        h, _ = self.gru(self.dropout(torch.gather(x, 1, to_left)))
        if last:
            cols, valid = cols[:, -1:], valid[:, -1:]
        back = ((cols - n_pad) % L)[..., None].expand(-1, -1, h.shape[2])
        return self.out(torch.gather(h, 1, back)) * valid[..., None]      # padding: zeros, not the wrapped tail


    def states_without_each(self, full: torch.Tensor, shifted: torch.Tensor, shifted_valid: torch.Tensor,
                            first: int = 0) -> torch.Tensor:
        """Newest states [w + 1 - first, dim] of `full` [w, dim] (every position an item; row 0) and of the
        sequences that leave one position p >= `first` out of it (row p + 1 - first), in eval mode with
        one GRU layer.

        Row p reads `shifted` [w, dim] (the window without its newest item, `shifted_valid` [w] False on
        left padding) up to position p, then `full` after p: its recurrence starts from the shifted
        run's state after p and reads only positions p + 1 .. w - 1, (w - 1) w / 2 steps in all
        instead of w^2 (one packed run; `full` and `shifted` themselves in one run before it)."""
        w, hidden = full.shape[0], self.gru.hidden_size
        n_pad = int((~shifted_valid).sum())
        both = nn.utils.rnn.pack_padded_sequence(
            torch.stack([full, torch.cat([shifted[n_pad:], shifted[:n_pad]])]), torch.tensor([w, w - n_pad]),
            batch_first=True)
        seen, last = self.gru(both)
        start = full.new_zeros(w, hidden)                   # the state after positions <= p: nothing read yet ...
        start[n_pad:] = nn.utils.rnn.pad_packed_sequence(seen, batch_first=True)[0][1, :w - n_pad]  # ... or shifted's
        ends = full.new_zeros(0, hidden)
        if first < w - 1:
            # row p in first .. w - 2: positions p + 1 .. w - 1 of `full`, right-padded (lengths descending)
            steps = torch.arange(first, w - 1, device=full.device)
            pos = (steps[:, None] + 1 + torch.arange(w - 1 - first, device=full.device)[None, :]).clamp_max(w - 1)
            rest = nn.utils.rnn.pack_padded_sequence(full[pos], w - 1 - steps.cpu(), batch_first=True)
            ends = self.gru(rest, start[first:w - 1][None].contiguous())[1][0]
        # row w: the newest position left out, which is the shifted run
        return self.out(torch.cat([last[0, :1], ends, start[w - 1:]]))


# ---- causal CNN ------------------------------------------------------------------------------------
class _CausalConv(nn.Module):
    def __init__(self, dim: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.conv = nn.Conv1d(dim, dim, kernel, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:               # [B, dim, L]
        return self.conv(F.pad(x, (self.pad, 0)))


class _NextItNetBlock(nn.Module):
    """Residual block "b": conv(d) -> LN -> ReLU -> conv(2d) -> LN -> ReLU, plus the input."""

    def __init__(self, dim: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.conv1 = _CausalConv(dim, kernel, dilation)
        self.conv2 = _CausalConv(dim, kernel, 2 * dilation)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:   # [B, L, dim], [B, L, 1]
        h = F.relu(self.norm1(self.conv1(x.transpose(1, 2)).transpose(1, 2))) * keep
        h = F.relu(self.norm2(self.conv2(h.transpose(1, 2)).transpose(1, 2)))
        return (x + h) * keep


class CausalConvEncoder(nn.Module):
    """NextItNet: a stack of dilated causal residual blocks; receptive field grows exponentially.

    `dilations` (1, 4) repeated `blocks` times as in RecBole's NextItNet; each block's second
    convolution uses twice the dilation. Padding positions are zeroed after every convolution so
    that they act exactly like the zero padding of a shorter sequence.
    """

    def __init__(self, dim: int, kernel: int = 3, dilations: tuple[int, ...] = (1, 4), blocks: int = 5,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(_NextItNetBlock(dim, kernel, d) for _ in range(blocks) for d in dilations)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        keep = valid[..., None].to(x.dtype)
        x = self.dropout(x) * keep
        for block in self.blocks:
            x = block(x, keep)
        return x


# ---- Transformer -----------------------------------------------------------------------------------
class TransformerBlock(nn.Module):
    """Multi-head causal self-attention + position-wise feed-forward, each with a residual.

    norm_first=False (post-LN, BERT/RecBole): x = LN(x + Drop(Attn(x))); x = LN(x + Drop(FFN(x))).
    norm_first=True (pre-LN): x = x + Drop(Attn(LN(x))); x = x + Drop(FFN(LN(x))).
    """

    def __init__(self, dim: int, heads: int, inner: int, dropout: float, attn_dropout: float,
                 norm_first: bool, activation: str = "gelu") -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"embedding dim {dim} is not divisible by {heads} heads")
        self.heads, self.norm_first, self.attn_dropout = heads, norm_first, attn_dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ff1 = nn.Linear(dim, inner)
        self.ff2 = nn.Linear(inner, dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-12)
        self.norm2 = nn.LayerNorm(dim, eps=1e-12)
        self.dropout = nn.Dropout(dropout)
        self.act = F.gelu if activation == "gelu" else F.relu

    def attention(self, x: torch.Tensor, mask: torch.Tensor, last: bool = False) -> torch.Tensor:
        B, L, D = x.shape
        H, dropout_p = self.heads, self.attn_dropout if self.training else 0.0
        if not last:
            q, k, v = self.qkv(x).view(B, L, 3, H, D // H).permute(2, 0, 3, 1, 4)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
            return self.proj(out.transpose(1, 2).reshape(B, L, D))
        # the last query only (keys and values of every position): [B, 1, D]
        w, b = self.qkv.weight, self.qkv.bias
        q = F.linear(x[:, -1:], w[:D], b[:D]).view(B, 1, H, D // H).transpose(1, 2)
        k, v = F.linear(x, w[D:], b[D:]).view(B, L, 2, H, D // H).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, :, -1:], dropout_p=dropout_p)
        return self.proj(out.transpose(1, 2).reshape(B, 1, D))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last: bool = False) -> torch.Tensor:
        """[B, L, D] -> [B, L, D]; `last`: the last position's output only, [B, 1, D] (every position
        is still read as a key and value: the other queries' outputs are what is skipped)."""
        rest = x[:, -1:] if last else x
        if self.norm_first:
            x = rest + self.dropout(self.attention(self.norm1(x), mask, last))
            return x + self.dropout(self.ff2(self.dropout(self.act(self.ff1(self.norm2(x))))))
        x = self.norm1(rest + self.dropout(self.attention(x, mask, last)))
        return self.norm2(x + self.dropout(self.ff2(self.act(self.ff1(x)))))


class TransformerEncoder(nn.Module):
    """SASRec's encoder: x + learned absolute positions -> [LN] -> dropout -> causal blocks.

    Positions count columns of the left-padded window, so the newest item always has position
    L - 1 (as in the original SASRec). Post-LN normalises the input embedding (RecBole); pre-LN
    adds a final LayerNorm instead. `causal=False` attends both ways (BERT4Rec).
    """

    def __init__(self, dim: int, max_len: int, blocks: int = 2, heads: int = 2, inner: int = 256,
                 dropout: float = 0.5, attn_dropout: float = 0.5, norm_first: bool = False,
                 activation: str = "gelu", causal: bool = True) -> None:
        super().__init__()
        self.causal = causal
        self.position = nn.Embedding(max_len, dim)
        self.norm = nn.LayerNorm(dim, eps=1e-12)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, inner, dropout, attn_dropout, norm_first,
                                                     activation) for _ in range(blocks))

    def forward(self, x: torch.Tensor, valid: torch.Tensor, last: bool = False) -> torch.Tensor:
        """[B, L, dim] -> [B, L, dim]; `last`: the newest position's state only, [B, 1, dim] (what scoring
        reads: the last block skips every other query, ~40% of the work of a 2-block encoder)."""
        L = x.shape[1]
        pos = self.position.weight[self.position.num_embeddings - L:]        # right-aligned
        x = x + pos[None]
        x = self.dropout(x if self.norm_first else self.norm(x))
        mask = causal_mask(valid) if self.causal else padding_mask(valid)
        for n, block in enumerate(self.blocks):
            x = block(x, mask, last=last and n == len(self.blocks) - 1)
        return self.norm(x) if self.norm_first else x


    def states_without_each(self, full: torch.Tensor, shifted: torch.Tensor, full_valid: torch.Tensor,
                            shifted_valid: torch.Tensor, first: int = 0) -> torch.Tensor:
        """Newest states [w + 1 - first, dim] of `full` [w, dim] (row 0) and of the sequences that leave
        one position p >= `first` out of it (row p + 1 - first), in eval mode, causal attention only.

        The sequence without p holds `shifted` (the window without its newest item; `shifted_valid`
        [w] False on padding) at positions <= p and `full` after p. Causal, so its states at
        positions <= p, in every block, are the shifted run's: only its positions after p are
        computed (the pairs (p, t > p)), each reading the shifted run's keys and values up to p. In
        the first block every pair's input is `full`'s own, so its projections are too. `full`
        itself and the variant p = w - 1 (which is `shifted`) are plain runs."""
        w, D = full.shape
        H = self.blocks[0].heads
        dev = full.device
        pos = self.position.weight[self.position.num_embeddings - w:]
        h_full = full + pos if self.norm_first else self.norm(full + pos)
        h_s = shifted + pos if self.norm_first else self.norm(shifted + pos)
        masks = causal_mask(torch.stack([full_valid, shifted_valid]))   # the two plain runs, one batch
        left_out = torch.arange(first, w - 1, device=dev)         # variant rows r: position left_out[r]
        cols = torch.arange(first + 1, w, device=dev)              # the query positions any of them needs
        V, C = len(left_out), len(cols)
        r_idx, c_idx = (cols[None, :] > left_out[:, None]).nonzero(as_tuple=True)   # the pairs (r, t > p)
        t_idx = cols[c_idx]
        slots = torch.arange(w, device=dev)
        valid = torch.where(slots[None, :] <= left_out[:, None], shifted_valid[None, :], full_valid[None, :])  # [V, w]
        allowed = ((slots[None, None, :] <= cols[None, :, None]) & valid[:, None, :]) \
            | (slots[None, None, :] == cols[None, :, None])       # [V, C, w]: causal, no padding, self
        mask = full.new_zeros(V, 1, C, w).masked_fill_(~allowed[:, None], -torch.inf)   # additive (faster)
        x_new = h_full[t_idx]                                      # [N, D] inputs of the pairs
        newest = (t_idx == w - 1).nonzero()[:, 0]                  # each row's pair (r, w - 1), in row order
        heads = (lambda a: a.view(a.shape[0], a.shape[1], H, D // H).transpose(1, 2))
        states = None
        for n, block in enumerate(self.blocks):
            last = n == len(self.blocks) - 1
            y = x_new
            if V:
                norm = block.norm1 if self.norm_first else (lambda x: x)
                qkv_s = block.qkv(norm(h_s))
                qkv_new = block.qkv(norm(h_full))[t_idx] if n == 0 else block.qkv(norm(x_new))
                k = qkv_s[None, :, D:2 * D].repeat(V, 1, 1)
                v = qkv_s[None, :, 2 * D:].repeat(V, 1, 1)
                k[r_idx, t_idx] = qkv_new[:, D:2 * D]
                v[r_idx, t_idx] = qkv_new[:, 2 * D:]
                if last:                                           # the newest position's query only
                    q = qkv_new[newest, None, :D]                  # [V, 1, D]
                    out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=mask[:, :, -1:])
                    attn = block.proj(out.transpose(1, 2).reshape(V, D))
                    res = x_new[newest]
                else:
                    q = full.new_zeros(V, C, D)
                    q[r_idx, c_idx] = qkv_new[:, :D]
                    out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=mask)
                    attn = block.proj(out.transpose(1, 2)[r_idx, c_idx].reshape(len(r_idx), D))
                    res = x_new
                if self.norm_first:
                    y = res + attn
                    y = y + block.ff2(block.act(block.ff1(block.norm2(y))))
                else:
                    y = block.norm1(res + attn)
                    y = block.norm2(y + block.ff2(block.act(block.ff1(y))))
            runs = block(torch.stack([h_full, h_s]), masks, last=last)
            if last:
                states = torch.cat([runs[0], y if V else y[:0], runs[1]])
            else:
                x_new, h_full, h_s = y, runs[0], runs[1]
        return self.norm(states) if self.norm_first else states


# ---- HSTU ------------------------------------------------------------------------------------------
class HSTUBlock(nn.Module):
    """One HSTU layer (Zhai et al. 2024, eq. 1-3):

        U, V, Q, K = split(SiLU(f1(LN(x))))
        A = SiLU(Q K^T / sqrt(d) + rab_pos + rab_time) / max_len   (causal, padding masked)
        x = x + f2(Drop(LN(A V) * U))
    """

    def __init__(self, dim: int, heads: int, max_len: int, dropout: float, time_buckets: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"embedding dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.norm_in = nn.LayerNorm(dim)
        self.f1 = nn.Linear(dim, 4 * dim)
        self.norm_attn = nn.LayerNorm(dim)
        self.f2 = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.pos_bias = nn.Parameter(torch.zeros(heads, max_len))        # by distance t - s
        self.time_bias = nn.Embedding(time_buckets, heads) if time_buckets else None
        if self.time_bias is not None:
            nn.init.zeros_(self.time_bias.weight)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, time_bucket: torch.Tensor | None) -> torch.Tensor:
        B, L, D = x.shape
        d = D // self.heads
        u, v, q, k = F.silu(self.f1(self.norm_in(x))).chunk(4, dim=-1)
        q, k, v = (t.view(B, L, self.heads, d).transpose(1, 2) for t in (q, k, v))   # [B, H, L, d]
        logits = q @ k.transpose(-1, -2) / math.sqrt(d)
        dist = (torch.arange(L, device=x.device)[:, None] - torch.arange(L, device=x.device)[None, :])
        logits = logits + self.pos_bias[:, dist.clamp(0, self.pos_bias.shape[1] - 1)][None]
        if self.time_bias is not None and time_bucket is not None:
            logits = logits + self.time_bias(time_bucket).permute(0, 3, 1, 2)      # [B, H, L, L]
        attn = F.silu(logits) * mask / self.pos_bias.shape[1]     # a constant: padding-invariant
        out = (attn @ v).transpose(1, 2).reshape(B, L, D)
        return x + self.f2(self.dropout(self.norm_attn(out) * u))


class HSTUEncoder(nn.Module):
    """Stack of HSTU blocks; `times [batch, L]` (seconds, or positions) feed the time bias through
    log-buckets of |t_query - t_key|. Without times only the relative position bias is used."""

    def __init__(self, dim: int, max_len: int, blocks: int = 2, heads: int = 2, dropout: float = 0.2,
                 time_buckets: int = 32) -> None:
        super().__init__()
        self.time_buckets = time_buckets
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(HSTUBlock(dim, heads, max_len, dropout, time_buckets) for _ in range(blocks))
        self.norm = nn.LayerNorm(dim)

    def bucket(self, times: torch.Tensor) -> torch.Tensor:
        """[B, L] times -> [B, L, L] bucket ids of log(1 + |t_q - t_k|)."""
        delta = (times[:, :, None] - times[:, None, :]).abs().float()
        return torch.log1p(delta).div(math.log(2.0)).floor().long().clamp(0, self.time_buckets - 1)

    def forward(self, x: torch.Tensor, valid: torch.Tensor, times: torch.Tensor | None = None) -> torch.Tensor:
        mask = causal_mask(valid).to(x.dtype)
        buckets = self.bucket(times) if times is not None and self.time_buckets else None
        x = self.dropout(x)
        for block in self.blocks:
            x = block(x, mask, buckets)
        return self.norm(x)
