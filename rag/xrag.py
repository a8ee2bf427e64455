"""xRAG: one retrieved document = one soft token in the LLM's input-embedding space.

Cheng, Wang, Wu, Ge, Wang, Wang & Zhao, "xRAG: Extreme Context Compression for
Retrieval-augmented Generation with One Token", NeurIPS 2024 (arXiv:2405.13792).

The document's sentence embedding ``e = E(doc)`` from a frozen dense retriever (here MiniLM,
384-d) is mapped by a trained *modality projector* ``P`` (a 2-layer MLP, ``384 -> H -> H`` with
GELU, ``H`` = the LLM's hidden size, 576 for SmolLM2-135M) to one vector that replaces the
document text in the frozen LLM's input embeddings.

This module holds what the compressor/generator pair shares:

* :class:`Projector` and its files (``projector.safetensors`` + ``projector.json``);
* the in-band *xRAG token*: the compressor writes ``<xRAG:...>`` (the embedding, int8-quantised
  with a float32 scale, base64url) where the document text was, so the token travels through any
  prompt template (``Pipeline``'s ``[n] title: text`` lines, 516 characters < its 1000-character
  source limit) to :class:`rag.generators.xrag.XRAGGenerator`, which splices ``P(e)`` there;
* :func:`splice_embeds`: chat text with tokens -> ``inputs_embeds (1, L, H)``, one position per
  token. Training (``bench/train_xrag.py``) and inference use this same function.

>>> tok = encode_token(np.ones(4, dtype=np.float32) / 2)
>>> tok[:6], np.allclose(decode_token(tok), 0.5, atol=1e-2)
('<xRAG:', True)
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ConfigError, DataError
from rag.extras import require

TOKEN_RE = re.compile(r"<xRAG:([A-Za-z0-9_-]+=*)>")
FILES = ("projector.safetensors", "projector.json")


def encode_token(vec: np.ndarray) -> str:
    """``<xRAG:...>`` for an embedding ``(D,)``: float32 scale + int8 values, base64url."""
    v = np.asarray(vec, dtype=np.float32).reshape(-1)
    scale = float(np.abs(v).max()) / 127.0 or 1.0
    q = np.clip(np.round(v / scale), -127, 127).astype(np.int8)
    raw = np.float32(scale).tobytes() + q.tobytes()
    return f"<xRAG:{base64.urlsafe_b64encode(raw).decode()}>"


def decode_token(token: str) -> np.ndarray:
    """The embedding ``(D,)`` (float32) carried by an ``<xRAG:...>`` token."""
    m = TOKEN_RE.fullmatch(token.strip())
    if not m:
        raise ConfigError(f"not an xRAG token: {token[:40]!r}")
    raw = base64.urlsafe_b64decode(m.group(1))
    scale = np.frombuffer(raw[:4], dtype=np.float32)[0]
    return np.frombuffer(raw[4:], dtype=np.int8).astype(np.float32) * scale


def roundtrip(vecs: np.ndarray) -> np.ndarray:
    """``vecs (N, D)`` as the generator sees them after the token's int8 quantisation."""
    return np.stack([decode_token(encode_token(v)) for v in np.asarray(vecs)])


def projector_class() -> Any:
    torch = require("torch", feature="xRAG")

    module: Any = torch.nn.Module

    class Projector(module):
        """``P(e) = W2 gelu(W1 e + b1) + b2``: ``e (B, d_in)`` -> ``(B, d_out)`` (xRAG's 2-layer
        MLP modality projector)."""

        def __init__(self, d_in: int = 384, d_out: int = 576, d_hidden: int | None = None):
            super().__init__()
            self.d_in, self.d_out = d_in, d_out
            self.d_hidden = d_hidden or d_out
            self.net = torch.nn.Sequential(
                torch.nn.Linear(d_in, self.d_hidden),
                torch.nn.GELU(),
                torch.nn.Linear(self.d_hidden, d_out),
            )

        def forward(self, e: Any) -> Any:
            return self.net(e)

    return Projector


def new_projector(d_in: int = 384, d_out: int = 576, seed: int = 0) -> Any:
    """A freshly initialised projector (seeded)."""
    torch = require("torch", feature="xRAG")
    torch.manual_seed(seed)
    return projector_class()(d_in, d_out)


def save_projector(proj: Any, folder: str | Path, manifest: dict[str, Any]) -> Path:
    """Write ``projector.safetensors`` (weights) and ``projector.json`` (dims, encoder, LLM and
    ``manifest``: training steps, data, time) under ``folder``."""
    st = require("safetensors.torch", extra="models", feature="saving an xRAG projector")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in proj.state_dict().items()}
    from rag.index.files import publish
    from rag.persist import atomic_write_text

    publish(out / FILES[0], lambda tmp: st.save_file(state, str(tmp)))

    meta = {"d_in": proj.d_in, "d_out": proj.d_out, "d_hidden": proj.d_hidden, **manifest}
    atomic_write_text(out / FILES[1], json.dumps(meta, indent=2))
    return out


def load_projector(folder: str | Path) -> tuple[Any, dict[str, Any]]:
    """``(projector in eval mode, manifest)`` saved by :func:`save_projector`."""
    st = require("safetensors.torch", extra="models", feature="loading an xRAG projector")
    p = Path(folder)
    if not all((p / f).exists() for f in FILES):
        raise DataError(
            f"{str(p)!r} holds no trained xRAG projector ({', '.join(FILES)}); train one with "
            "`python bench/train_xrag.py --out DIR`"
        )
    meta = json.loads((p / FILES[1]).read_text(encoding="utf-8"))
    proj = projector_class()(meta["d_in"], meta["d_out"], meta["d_hidden"])
    proj.load_state_dict(st.load_file(str(p / FILES[0])))
    return proj.eval(), meta


def splice_embeds(lm: Any, tokenizer: Any, projector: Any, text: str) -> tuple[Any, Any, int]:
    """``(inputs_embeds (1, L, H), input positions' token ids or -1 (L,), n_tokens)``.

    The text is tokenised piece by piece between ``<xRAG:...>`` tokens (no special tokens added:
    ``text`` is already chat-templated); each xRAG token becomes one position holding
    ``projector(embedding)``. Gradients flow into ``projector`` only if the caller enables them.
    """
    torch = require("torch", feature="xRAG")
    table = lm.get_input_embeddings()
    vecs, ids, pos = [], [], 0
    for m in TOKEN_RE.finditer(text):
        ids.extend(tokenizer(text[pos : m.start()], add_special_tokens=False)["input_ids"])
        vecs.append(torch.from_numpy(decode_token(m.group(0))))
        ids.append(-1)
        pos = m.end()
    ids.extend(tokenizer(text[pos:], add_special_tokens=False)["input_ids"])
    id_t = torch.tensor(ids, dtype=torch.long, device=table.weight.device)
    emb = table(id_t.clamp(min=0))
    if vecs:
        p = next(projector.parameters())
        proj = projector(torch.stack(vecs).to(p.device, p.dtype)).to(emb.dtype)
        emb = emb.clone()
        emb[id_t == -1] = proj
    return emb.unsqueeze(0), id_t, len(vecs)
