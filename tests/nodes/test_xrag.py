"""xRAG (rag.generators.xrag_projector, rag.generators.xrag_train, XRAGCompressor, XRAGGenerator).

* the projector's training loss falls over a few steps (frozen tiny Llama built from a config with
  the SmolLM2 tokenizer; the LLM's weights do not move);
* a saved projector reloads to identical outputs;
* compressor -> generator end to end with the real SmolLM2-135M: one input position per document,
  and that position is read (a different document changes the next-token distribution).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from rag.compressors.xrag import XRAGCompressor  # noqa: E402
from rag.core.errors import ConfigError, DataError  # noqa: E402
from rag.core.models import resolve_model  # noqa: E402
from rag.core.types import Document, Hit, Query, Ranking  # noqa: E402
from rag.generators.xrag import XRAGGenerator  # noqa: E402
from rag.generators.xrag_projector import (  # noqa: E402
    decode_token,
    encode_token,
    load_projector,
    new_projector,
    save_projector,
    splice_embeds,
)
from rag.generators.xrag_train import PARAPHRASE, VERIFY, Example, batch_loss, freeze  # noqa: E402


@pytest.fixture(scope="module")
def tiny_lm():
    torch.manual_seed(0)
    tok = transformers.AutoTokenizer.from_pretrained(resolve_model("smollm2-135m"))
    cfg = transformers.LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256,
        initializer_range=0.5,  # a random LM that reacts to its inputs
    )  # fmt: skip
    return tok, freeze(transformers.LlamaForCausalLM(cfg))


def test_token_roundtrip() -> None:
    v = np.random.default_rng(0).normal(size=384).astype(np.float32) * 0.05
    tok = encode_token(v)
    assert len(tok) < 1000  # fits Pipeline's max_source_chars
    back = decode_token(tok)
    assert back.shape == (384,)
    assert np.dot(back, v) / np.linalg.norm(back) / np.linalg.norm(v) > 0.999
    with pytest.raises(ConfigError, match="not an xRAG token"):
        decode_token("plain text")


def test_training_loss_falls_and_llm_stays_frozen(tiny_lm) -> None:
    tok, lm = tiny_lm
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    data = [
        Example(rng.normal(size=384).astype(np.float32), PARAPHRASE, "Jupiter is the largest."),
        Example(rng.normal(size=384).astype(np.float32), PARAPHRASE, "Mars has two moons."),
        Example(
            rng.normal(size=384).astype(np.float32),
            VERIFY.replace("{claim}", "Mars has moons"),
            "Yes",
            "Mars has two moons.",
        ),
    ]
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    proj = new_projector(384, 32, seed=0)
    opt = torch.optim.Adam(proj.parameters(), lr=1e-2)
    losses = []
    for _ in range(12):
        loss = batch_loss(lm, tok, proj, data, max_target=8, alpha_kl=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.3, losses
    assert all(torch.equal(before[k], v) for k, v in lm.state_dict().items())


def test_saved_projector_reloads_identically(tmp_path) -> None:
    proj = new_projector(384, 576, seed=3)
    save_projector(proj, tmp_path / "p", {"note": "test"})
    again, meta = load_projector(tmp_path / "p")
    x = torch.randn(5, 384)
    with torch.no_grad():
        assert torch.equal(proj(x), again(x))
    assert meta["note"] == "test" and meta["d_out"] == 576
    with pytest.raises(DataError, match="train one with"):
        load_projector(tmp_path / "missing")


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    folder = tmp_path_factory.mktemp("xrag") / "projector"
    save_projector(new_projector(384, 576, seed=0), folder, {"note": "untrained, for the test"})
    torch.set_num_threads(2)
    return XRAGGenerator(projector=str(folder), max_new_tokens=4).load()


def test_compressor_to_generator_end_to_end(generator, minilm, demo_docs) -> None:
    docs = {d.id: d for d in demo_docs}
    q = Query(text="Which planet is the largest?")
    ranking = Ranking(query=q, hits=(Hit(document=docs["jupiter"], score=1.0),))
    out = XRAGCompressor(encoder=minilm, drop_title=True).compress(ranking)
    d = out.hits[0].document
    assert d.title == "" and d.metadata["xrag_title"] == "Jupiter"
    assert d.metadata["compression"]["tokens_out"] == 1
    want = minilm.encode([docs["jupiter"].full_text], kind="document")[0]
    assert np.dot(decode_token(d.text), want) > 0.999  # unit vectors

    def msgs(ctx: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": f"Background: {ctx}\nQuestion: {q.text}"}]

    n_tok = generator.prompt_positions(msgs(d.text))
    n_txt = generator.prompt_positions(msgs(docs["jupiter"].full_text))
    n_none = generator.prompt_positions(msgs(""))
    assert n_tok == n_none + 1 < n_txt  # one position per document
    text = generator.generate(msgs(d.text))
    assert isinstance(text, str) and text == "".join(generator.stream(msgs(d.text)))
    # the token is read: another document changes the next-token distribution
    other = XRAGCompressor(encoder=minilm).compress(
        Ranking(query=q, hits=(Hit(document=docs["mars"], score=1.0),))
    )
    with torch.no_grad():
        a = generator.lm(inputs_embeds=generator.prompt_embeds(msgs(d.text))[0]).logits[0, -1]
        b = generator.lm(
            inputs_embeds=generator.prompt_embeds(msgs(other.hits[0].document.text))[0]
        ).logits[0, -1]
    assert not torch.allclose(a, b)


def test_pipeline_answers_through_xrag(generator, demo_docs) -> None:
    from rag.pipeline import Pipeline
    from retrievers import BM25Retriever

    pipe = Pipeline(
        retriever=BM25Retriever(),
        compressors=[XRAGCompressor(drop_title=True)],
        generator=generator,
        k=2,
    ).index(demo_docs)
    stages = pipe.run_stages(["Which planet is the largest?"])
    hits = list(stages.values())[-1][0].hits
    assert len(hits) == 2 and all(h.document.text.startswith("<xRAG:") for h in hits)
    answer = pipe.ask("Which planet is the largest?")
    assert isinstance(answer.text, str)


def test_generator_checks() -> None:
    with pytest.raises(ConfigError, match="trained projector folder"):
        XRAGGenerator(projector="")
    with pytest.raises(DataError, match="no trained xRAG projector"):
        XRAGGenerator(projector="/nonexistent/xrag", max_new_tokens=2).load()


def test_splice_counts_positions(tiny_lm) -> None:
    tok, lm = tiny_lm
    proj = new_projector(384, 32)
    v = encode_token(np.ones(384, dtype=np.float32) / 20)
    emb, ids, n = splice_embeds(lm, tok, proj, f"a {v} b {v} c")
    plain = tok("a  b  c", add_special_tokens=False)["input_ids"]
    assert n == 2 and emb.shape == (1, len(ids), 32) and int((ids == -1).sum()) == 2
    assert len(ids) == len(plain) + 2
    assert isinstance(Document(id="x", text=v).text, str)
