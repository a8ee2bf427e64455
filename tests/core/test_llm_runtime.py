"""The one LLM runtime (:mod:`rag.core.llm`) and the generator base (:mod:`rag.generators.base`).

* a pipeline with a transformers generator, both LLM rerankers and an LLM judge on SmolLM2 loads
  the model once (weights loads counted at ``from_pretrained``, runtime identity checked);
* ``generate == "".join(stream)`` on every backend available offline (transformers here, HTTP
  against a stdlib server speaking OpenAI's JSON and SSE shapes; vLLM in ``test_vllm_cpu.py``);
* bad sampling settings give the same one-line ``ConfigError`` on every backend, at
  construction and per call, before any model, engine or server is touched.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rag.core.errors import ConfigError, MissingExtraError
from rag.core.llm import TransformersLLM, forget_llms, get_llm, llm_key, restore_llms
from rag.generators import (
    BaseGenerator,
    OpenAICompatibleGenerator,
    TransformersGenerator,
    VLLMGenerator,
    XRAGGenerator,
)

MSGS = [{"role": "user", "content": "Count from one to ten, separated by commas."}]


# -- the process-wide cache (no model loaded) -----------------------------------------------------
def test_cache_key_is_backend_model_device_dtype() -> None:
    pytest.importorskip("torch")
    import torch

    here = "cuda" if torch.cuda.is_available() else "cpu"
    assert llm_key("transformers", "smollm2-135m") == (
        "transformers",
        "smollm2-135m",
        here,
        "float32",
    )
    a = get_llm("transformers", "smollm2-135m")
    assert a is get_llm("transformers", "smollm2-135m", device=here)
    assert a is not get_llm("transformers", "some/other-model")
    assert llm_key("vllm", "m") == llm_key("vllm", "m", seed=0, gpu_memory_utilization=0.5)
    assert llm_key("vllm", "m") != llm_key("vllm", "m", max_model_len=2048)
    with pytest.raises(ConfigError, match="backend must be one of"):
        get_llm("onnx", "smollm2-135m")
    with pytest.raises(ConfigError, match="unknown vLLM options"):
        llm_key("vllm", "m", temperature=1.0)


@pytest.fixture
def fresh_cache():
    """An empty runtime cache for one test (what other tests loaded is put back after)."""
    held = forget_llms()
    yield
    restore_llms(held)


# -- one model, one load --------------------------------------------------------------------------
def test_generator_rerankers_and_judge_share_one_load(fresh_cache, monkeypatch) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from rag.core.types import Answer
    from rag.pipeline import Pipeline
    from rag.pipeline.judges import LLMJudge
    from rerankers import LLMListwiseReranker, LLMPointwiseReranker
    from retrievers import BM25Retriever

    torch.set_num_threads(2)
    loads: list[str] = []
    real = transformers.AutoModelForCausalLM.from_pretrained.__func__

    def counted(cls, path, *args, **kwargs):  # a spy: counts, then loads for real
        loads.append(str(path))
        return real(cls, path, *args, **kwargs)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", classmethod(counted))

    gen = TransformersGenerator(max_new_tokens=12)
    # an alias of the same packaged model (smollm2-135m) is the same runtime
    pointwise = LLMPointwiseReranker(model="smollm2", backend="transformers", max_passage_tokens=32)
    listwise = LLMListwiseReranker(backend="transformers", window=3, step=2, max_passage_tokens=16)
    pipe = Pipeline(BM25Retriever(), rerankers=[pointwise, listwise], generator=gen, k=2)
    pipe.index(
        [
            {"id": "a", "text": "Aspirin lowers fever and relieves pain."},
            {"id": "b", "text": "Paris is the capital of France."},
            {"id": "c", "text": "Fever is a raised body temperature; aspirin treats it."},
        ]
    )
    answer = pipe.ask("What does aspirin do to fever?")
    judge = LLMJudge(backend="transformers")
    p = judge.p_relevant(["What does aspirin do to fever?"], [answer.text])

    assert isinstance(answer, Answer) and answer.contexts and 0.0 <= float(p[0]) <= 1.0
    assert len(loads) == 1, loads
    runtime = gen.runtime
    assert isinstance(runtime, TransformersLLM) and runtime.loads == 1
    assert pointwise.lm is runtime and listwise.lm is runtime and judge._lm is runtime
    assert gen.lm is runtime.lm and gen.tokenizer is runtime.tokenizer
    assert pointwise.stage.startswith("llm_pointwise:smollm2@")  # its own name, not the runtime's
    assert listwise.stage.startswith("llm_listwise:smollm2-135m@")


def test_aliases_of_a_packaged_model_share_a_key_other_names_are_kept() -> None:
    pytest.importorskip("torch")
    key = llm_key("transformers", "smollm2-135m", "cpu")
    for alias in ("smollm2", "SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct"):
        assert llm_key("transformers", alias, "cpu") == key
    assert llm_key("transformers", "Org/Other", "cpu")[1] == "Org/Other"  # case kept


# -- generate == "".join(stream) -----------------------------------------------------------------
@pytest.fixture(scope="module")
def smol():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    return TransformersGenerator(max_new_tokens=16).load()


@pytest.mark.parametrize("stop", [None, ["\n"], ["3."]], ids=["no-stop", "newline", "3."])
def test_transformers_generate_is_the_joined_stream(smol, stop) -> None:
    pieces = list(smol.stream(MSGS, stop=stop))
    text = smol.generate(MSGS, stop=stop)
    assert len(pieces) >= 1 and text == "".join(pieces)
    if stop:
        full = smol.generate(MSGS)
        assert stop[0] in full and text == full.split(stop[0])[0]  # cut before the first stop


def test_a_backend_fills_one_hook_and_the_base_handles_stops() -> None:
    class Pieces(BaseGenerator):  # a backend whose "model" replays the user message in pieces
        name = ""

        def _stream(self, messages, sampling):
            text = messages[-1]["content"]
            yield from (text[i : i + 3] for i in range(0, len(text), 3))

    gen = Pieces(stop=["\n\n"])
    assert (
        gen.generate("Jupiter [1].\n\nMore")
        == "Jupiter [1]."
        == "".join(gen.stream("Jupiter [1].\n\nMore"))
    )
    assert [len(p) for p in gen.stream("abcdefgh")][-1] >= 1  # held-back tail is flushed
    assert gen.generate("a STOP b", stop=["STOP"]) == "a "

    class Finished(Pieces):  # a backend that returns finished text (vLLM offline, xRAG)
        streams_tokens = False

    one = Finished(stop=["\n\n"])
    assert list(one.stream("Jupiter [1].\n\nMore")) == ["Jupiter [1]."]  # one piece, cut
    assert list(one.stream("\n\nMore")) == [] and one.generate("\n\nMore") == ""


class _OpenAIShaped:
    """A stdlib server answering chat completions with a fixed reply, as JSON or as SSE deltas."""

    def __init__(self, reply: str) -> None:
        self.bodies: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                outer.bodies.append(body)
                if body["stream"]:
                    deltas = [reply[i : i + 4] for i in range(0, len(reply), 4)]
                    chunks = [{"choices": [{"index": 0, "delta": {"content": d}}]} for d in deltas]
                    data = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks)
                    data += "data: [DONE]\n\n"
                else:
                    msg = {"role": "assistant", "content": reply}
                    data = json.dumps({"choices": [{"index": 0, "message": msg}]})
                raw = data.encode()
                self.send_response(200)
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


def test_http_generate_is_the_joined_stream() -> None:
    pytest.importorskip("httpx")
    srv = _OpenAIShaped("One, two, three.\n\nFour")
    try:
        gen = OpenAICompatibleGenerator(base_url=srv.base_url, stop=["\n\n"])
        assert gen.generate(MSGS) == "".join(gen.stream(MSGS)) == "One, two, three."
        assert gen.generate(MSGS, stop=[", t"]) == "".join(gen.stream(MSGS, stop=[", t"])) == "One"
        assert [b["stream"] for b in srv.bodies] == [False, True, False, True]
    finally:
        srv.httpd.shutdown()
        srv.httpd.server_close()


# -- one validation for every backend -------------------------------------------------------------
BACKENDS = {
    "transformers": lambda **kw: TransformersGenerator(**kw),
    "http": lambda **kw: OpenAICompatibleGenerator(base_url="http://127.0.0.1:9/v1", **kw),
    "vllm": lambda **kw: VLLMGenerator(**kw),
    "xrag": lambda **kw: XRAGGenerator(projector="no-such-projector", **kw),
}
BAD = [
    ({"max_new_tokens": 0}, "max_new_tokens must be >= 1, got 0"),
    ({"max_new_tokens": 2.5}, "max_new_tokens must be an int >= 1, got 2.5"),
    ({"temperature": -0.5}, "temperature must be >= 0, got -0.5"),
    ({"temperature": "hot"}, "temperature must be a number >= 0, got 'hot'"),
    ({"stop": "\n"}, "stop must be a list of strings, got '\\n'"),
]


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_bad_sampling_is_the_same_one_line_error_on_every_backend(backend) -> None:
    make = BACKENDS[backend]
    try:
        gen = make(max_new_tokens=4)
    except MissingExtraError as e:
        pytest.skip(f"{backend}: {e}")
    for settings, message in BAD:
        with pytest.raises(ConfigError) as at_init:
            make(**settings)
        with pytest.raises(ConfigError) as per_call:
            gen.generate(MSGS, **settings)
        with pytest.raises(ConfigError) as streaming:
            gen.stream(MSGS, **settings)  # raised when asked, before the first piece
        for err in (at_init, per_call, streaming):
            assert str(err.value) == message
    with pytest.raises(ConfigError, match="messages must be a non-empty list") as empty:
        gen.generate([])
    assert "\n" not in str(empty.value)
    assert not gen._loaded, "validation must not need the model, engine or server"
