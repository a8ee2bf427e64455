"""Token-level encoder for late interaction: one L2-normalised vector per kept token.

Two conventions, chosen by the checkpoint (``colbert=None``) or forced:

* **plain** (any HF encoder, default the packaged all-MiniLM-L6-v2): the last hidden states of the
  tokens the attention mask keeps (``[CLS]`` and ``[SEP]`` included), punctuation optionally
  dropped, optionally projected by a ``Dense`` module, L2-normalised.
* **ColBERT** (PyLate / sentence-transformers folders whose ``config_sentence_transformers.json``
  says ``"model_type": "ColBERT"``), exactly as PyLate 1.6 encodes:

  - the marker token (``query_prefix`` / ``document_prefix``, PyLate's defaults ``"[Q] "`` /
    ``"[D] "``, Stanford checkpoints ``"[unused0]"`` / ``"[unused1]"``) is inserted right after
    ``[CLS]``; the text is truncated to ``length - 1`` tokens first;
  - queries are padded with ``[MASK]`` to ``query_length`` (query augmentation); the expansion
    tokens are not attended to unless ``attend_to_expansion_tokens``, but all ``query_length``
    output vectors are kept;
  - documents drop padding and the skiplist tokens (``string.punctuation`` by default);
  - the hidden states go through the Dense projection(s), then L2 normalisation.

``tests/nodes/test_multivector_parity.py`` checks the vectors against PyLate to 1e-5.

>>> enc = TokenEncoder()                                   # packaged MiniLM, plain convention
>>> [v.shape for v in enc.encode_documents(["late interaction"])]   # doctest: +SKIP
[(4, 384)]
"""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rag.core.encoders import TransformerEncoder
from rag.core.errors import ConfigError
from rag.core.extras import require
from rag.core.models import resolve_model
from rag.core.nodes import Node
from rag.core.runtime import resolve_precision

_ACTIVATIONS = ("torch.nn.modules.linear.Identity", "torch.nn.modules.activation.Tanh")


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


class TokenEncoder(Node):
    """Per-token vectors from any HF encoder, with ColBERT's conventions for ColBERT checkpoints.

    Args:
        model: short name (``minilm``), HF id or local folder (a PyLate/ST ColBERT folder works).
        colbert: ``None`` detects ColBERT checkpoints; ``True``/``False`` forces the convention.
        query_prefix / document_prefix: marker tokens; ``None`` = the checkpoint's (ColBERT) or
            none (plain); ``""`` = none.
        query_length / document_length: tokens per text, marker included; ``None`` = the
            checkpoint's or 32 / 180 (ColBERT), 256 / 256 (plain).
        do_query_expansion: pad queries with ``[MASK]`` to ``query_length`` (ColBERT default).
        attend_to_expansion_tokens: let the encoder attend to those ``[MASK]`` tokens.
        skip_punctuation: drop skiplist tokens from documents (ColBERT default ``True``, plain
            default ``False``).
        normalize: L2-normalise each token vector.
        batch_size / precision / device: as :class:`rag.core.encoders.TransformerEncoder`.
    """

    name: ClassVar[str] = "token_encoder"
    requires: ClassVar[tuple[str, ...]] = ("torch", "transformers")
    kind: ClassVar[str] = "encoder"

    def __init__(
        self,
        model: str = "minilm",
        colbert: bool | None = None,
        query_prefix: str | None = None,
        document_prefix: str | None = None,
        query_length: int | None = None,
        document_length: int | None = None,
        do_query_expansion: bool | None = None,
        attend_to_expansion_tokens: bool | None = None,
        skip_punctuation: bool | None = None,
        normalize: bool = True,
        batch_size: int = 32,
        precision: str = "fp32",
        device: str = "auto",
    ) -> None:
        for nm, v in (("query_length", query_length), ("document_length", document_length)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 2):
                raise ConfigError(f"{nm} must be an int >= 2 or None, got {v!r}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.colbert = colbert
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.query_length = query_length
        self.document_length = document_length
        self.do_query_expansion = do_query_expansion
        self.attend_to_expansion_tokens = attend_to_expansion_tokens
        self.skip_punctuation = skip_punctuation
        self.normalize = normalize
        self.batch_size = batch_size
        self.precision = resolve_precision(precision)
        self.device = device

    # -- loading --------------------------------------------------------------------------------
    def _load(self) -> None:
        self._torch = require("torch", feature="token encoders")
        root = Path(resolve_model(self.model))
        st_cfg = _read_json(root / "config_sentence_transformers.json")
        modules = _read_json(root / "modules.json") if (root / "modules.json").exists() else []
        is_colbert = st_cfg.get("model_type") == "ColBERT"
        self._colbert = self.colbert if self.colbert is not None else is_colbert
        tr_path = root
        for m in modules if isinstance(modules, list) else []:
            if m.get("type", "").endswith("Transformer") and m.get("path"):
                tr_path = root / m["path"]
        self._enc = TransformerEncoder(
            str(tr_path) if root.exists() else self.model,
            batch_size=self.batch_size,
            precision=self.precision,
            device=self.device,
        ).load()
        self.tokenizer = self._enc.tokenizer
        self._dense = self._load_dense(root, modules if isinstance(modules, list) else [])
        self._resolve_conventions(st_cfg, _read_json(tr_path / "sentence_bert_config.json"))

    def _load_dense(self, root: Path, modules: list[dict[str, Any]]) -> list[tuple[Any, Any, bool]]:
        """``(weight (out, in), bias | None, tanh)`` for each Dense module between the transformer
        and any pooling module."""
        torch = self._torch
        st = require("safetensors.torch", extra="models", feature="loading Dense projections")
        layers = []
        for m in modules[1:]:
            if m.get("type", "").endswith(("Pooling", "Normalize")):
                break  # what follows pooling acts on sentence vectors, not on tokens
            if not m.get("type", "").endswith("Dense"):
                raise ConfigError(f"unsupported module {m.get('type')!r} in {root}/modules.json")
            cfg = _read_json(root / m["path"] / "config.json")
            act = cfg.get("activation_function", _ACTIVATIONS[0])
            if act not in _ACTIVATIONS or cfg.get("use_residual"):
                raise ConfigError(f"{root / m['path']}: unsupported Dense config {cfg}")
            w = st.load_file(str(root / m["path"] / "model.safetensors"))
            dev = self._enc._device
            bias = w.get("linear.bias")
            layers.append(
                (
                    w["linear.weight"].to(dev, torch.float32),
                    bias.to(dev, torch.float32) if bias is not None else None,
                    act.endswith("Tanh"),
                )
            )
        return layers

    def _resolve_conventions(self, st_cfg: dict[str, Any], sbert_cfg: dict[str, Any]) -> None:
        def pick(value: Any, key: str, colbert_default: Any, plain_default: Any) -> Any:
            if value is not None:
                return value
            if self._colbert:
                return st_cfg.get(key) if st_cfg.get(key) is not None else colbert_default
            return plain_default

        self._q_prefix = pick(self.query_prefix, "query_prefix", "[Q] ", "")
        self._d_prefix = pick(self.document_prefix, "document_prefix", "[D] ", "")
        self._q_len = pick(self.query_length, "query_length", 32, 256)
        self._d_len = pick(self.document_length, "document_length", 180, 256)
        self._expand = pick(self.do_query_expansion, "do_query_expansion", True, False)
        attend = pick(self.attend_to_expansion_tokens, "attend_to_expansion_tokens", False, False)
        self._attend = bool(attend and self._expand)
        self._skip = pick(self.skip_punctuation, "", True, False)
        words = st_cfg.get("skiplist_words") if self._colbert else None
        words = words if words is not None else list(string.punctuation)
        self._skiplist = np.array(sorted({self.tokenizer.convert_tokens_to_ids(w) for w in words}))
        self._lower = bool(sbert_cfg.get("do_lower_case", False))
        tok = self.tokenizer
        pad = tok.mask_token_id if tok.mask_token_id is not None else tok.pad_token_id
        if pad is None:
            pad = tok.eos_token_id
        if pad is None:
            raise ConfigError(f"tokenizer of {self.model!r} has no [MASK], pad or eos token")
        self._pad_id = int(pad)
        self._prefix_ids = {}
        for kind, p in (("query", self._q_prefix), ("document", self._d_prefix)):
            pid = tok.convert_tokens_to_ids(p) if p else None
            if p and (pid is None or pid == tok.unk_token_id):
                raise ConfigError(
                    f"marker token {p!r} is not in the vocabulary of {self.model!r}; pass a token "
                    "it has (PyLate adds '[Q] '/'[D] ' when it builds a model; Stanford uses "
                    "'[unused0]'/'[unused1]')"
                )
            self._prefix_ids[kind] = pid

    @property
    def dim(self) -> int:
        self.load()
        return int(self._dense[-1][0].shape[0]) if self._dense else self._enc.dim

    @property
    def is_colbert(self) -> bool:
        self.load()
        return bool(self._colbert)

    # -- encoding -------------------------------------------------------------------------------
    def _tokenize(self, texts: Sequence[str], kind: str) -> list[list[int]]:
        """Token ids per text: ``[CLS] marker? tokens [SEP]``, at most ``length`` ids."""
        length = self._q_len if kind == "query" else self._d_len
        prefix = self._prefix_ids[kind]
        budget = length - 1 if prefix is not None else length
        # sentence-transformers strips (and optionally lowercases) before tokenising; so do we
        clean = [t.strip() for t in texts]
        if self._lower:
            clean = [t.lower() for t in clean]
        ids = self.tokenizer(clean, truncation=True, max_length=budget)["input_ids"]
        if prefix is not None:
            ids = [x[:1] + [prefix] + x[1:] for x in ids]
        return ids

    def encode(self, texts: Sequence[str], kind: str = "document") -> list[np.ndarray]:
        """One float32 matrix ``(L_i, D)`` per text (the kept tokens, in text order)."""
        if kind not in ("query", "document"):
            raise ConfigError(f"kind must be 'query' or 'document', got {kind!r}")
        self.load()
        if not texts:
            return []
        ids = self._tokenize(texts, kind)
        expand = kind == "query" and self._expand
        out: list[np.ndarray] = [np.zeros((0, self.dim), np.float32)] * len(ids)
        # queries go one at a time: a query's vectors must not depend on the batch it came in
        # (padding and kernel shapes change the last bits, and MaxSim ties would flip);
        # documents go in the shared runtime's length-sorted token-budget batches
        if kind == "query":
            plan = [[i] for i in range(len(ids))]
        else:
            plan = self._enc.runtime.plan([len(x) for x in ids])
        for pos in plan:
            for i, v in zip(
                pos, self._encode_batch([ids[i] for i in pos], kind, expand), strict=True
            ):
                out[i] = v
        return out

    def _encode_batch(self, ids: list[list[int]], kind: str, expand: bool) -> list[np.ndarray]:
        torch = self._torch
        width = self._q_len if expand else max(len(x) for x in ids)
        n = len(ids)
        input_ids = np.full((n, width), self._pad_id, dtype=np.int64)
        attn = np.zeros((n, width), dtype=np.int64)
        for r, x in enumerate(ids):
            input_ids[r, : len(x)] = x
            attn[r, : len(x)] = 1
        if expand:
            keep = np.ones_like(attn, dtype=bool)  # PyLate keeps every query position
            if self._attend:
                attn[:] = 1
        else:
            keep = attn.astype(bool)
            if kind == "document" and self._skip:
                keep &= ~np.isin(input_ids, self._skiplist)
        dev = self._enc._device
        feats = {
            "input_ids": torch.from_numpy(input_ids).to(dev),
            "attention_mask": torch.from_numpy(attn).to(dev),
        }
        if "token_type_ids" in self.tokenizer.model_input_names:
            feats["token_type_ids"] = torch.zeros_like(feats["input_ids"])
        with torch.inference_mode(), self._enc._autocast(int(input_ids.size)):
            hidden = self._enc.net(**feats).last_hidden_state
        hidden = hidden.float()
        for w, b, tanh in self._dense:
            hidden = torch.nn.functional.linear(hidden, w, b)
            if tanh:
                hidden = torch.tanh(hidden)
        keep_t = torch.from_numpy(keep).to(dev)
        vecs = []
        for r in range(n):
            v = hidden[r][keep_t[r]]
            if self.normalize:
                v = torch.nn.functional.normalize(v, p=2, dim=-1)
            vecs.append(v.cpu().numpy().astype(np.float32, copy=False))
        return vecs

    def encode_queries(self, texts: Sequence[str]) -> list[np.ndarray]:
        return self.encode(texts, kind="query")

    def encode_documents(self, texts: Sequence[str]) -> list[np.ndarray]:
        return self.encode(texts, kind="document")
