"""TokenEncoder reproduces PyLate's ColBERT token vectors on a tiny checkpoint built here.

PyLate 1.6 pins sentence-transformers 5.3 / transformers <= 5.3; with other versions it does not
load or encode (``KeyError: 'activation_function'``, no query padding), so the test skips unless
the installed versions satisfy PyLate's own requirements.
"""

from __future__ import annotations

import importlib.metadata as md

import numpy as np
import pytest


def pylate_usable() -> str:
    try:
        from packaging.requirements import Requirement

        for req in map(Requirement, md.requires("pylate") or []):
            if req.marker is not None or req.name not in ("sentence-transformers", "transformers"):
                continue
            if md.version(req.name) not in req.specifier:
                return f"pylate needs {req}, found {md.version(req.name)}"
        import pylate.models  # noqa: F401
    except Exception as e:  # noqa: BLE001 -- any failure means: no usable reference here
        return f"pylate not usable: {type(e).__name__}: {e}"
    return ""


REASON = pylate_usable()
pytestmark = pytest.mark.skipif(bool(REASON), reason=REASON)

QUERIES = ["what is late interaction, retrieval?", "  " + "a much longer query " * 10, "x"]
DOCS = ["ColBERT scores documents, token by token!", "short",
        "Another doc; with (punctuation) and numbers 3.14. " * 30]


@pytest.mark.parametrize("prefixes", [None, ("[unused0]", "[unused1]")])
def test_token_vectors_match_pylate(tmp_path, prefixes) -> None:
    import torch
    import transformers
    from pylate import models

    from rag.core.models import resolve_model
    from retrievers.multivector import TokenEncoder

    torch.set_num_threads(2)
    torch.manual_seed(0)
    tok = transformers.AutoTokenizer.from_pretrained(resolve_model("minilm"))
    cfg = transformers.BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64)
    base = tmp_path / "base"
    transformers.BertModel(cfg).save_pretrained(base)
    tok.save_pretrained(base)
    kw = {} if prefixes is None else {"query_prefix": prefixes[0], "document_prefix": prefixes[1]}
    model = models.ColBERT(model_name_or_path=str(base), embedding_size=16, device="cpu", **kw)
    model.save(str(tmp_path / "colbert"))
    ref = models.ColBERT(model_name_or_path=str(tmp_path / "colbert"), device="cpu")
    enc = TokenEncoder(str(tmp_path / "colbert"), precision="fp32", device="cpu")
    assert enc.is_colbert and enc.dim == 16
    for kind, texts in (("query", QUERIES), ("document", DOCS)):
        want = ref.encode(texts, is_query=kind == "query")
        got = enc.encode(texts, kind=kind)
        for w, g in zip(want, got, strict=True):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, atol=1e-5)
    assert all(len(v) == 32 for v in enc.encode_queries(QUERIES))  # [MASK] augmentation
