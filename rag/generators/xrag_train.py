"""Training the xRAG projector (LLM and encoder frozen), the paper's two stages.

Cheng et al., "xRAG: Extreme Context Compression for Retrieval-augmented Generation with One
Token", NeurIPS 2024 (arXiv:2405.13792), section 3.3:

1. **Paraphrase pretraining**: prompt = an instruction to restate the context + the xRAG token;
   target = the document text. Loss: next-token NLL of the target.
2. **Context-aware instruction tuning**: prompt = the xRAG token + a task (here: SciFact claim
   verification); target = the answer. Loss: ``alpha_nll * NLL + alpha_kl * KL(teacher || student)``
   on the answer positions, the teacher being the same frozen LLM reading the document *text*
   (self-distillation; the paper's ``alpha_nll = 1``, ``alpha_kl = 2``, temperature 1).

Only the projector's parameters get gradients; every prompt goes through the chat template that
:class:`rag.generators.xrag.XRAGGenerator` applies at inference and through the same
:func:`rag.generators.xrag_projector.splice_embeds`. ``bench/train_xrag.py`` runs both stages on the
shared corpora.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rag.core.extras import require
from rag.generators.xrag_projector import encode_token, splice_embeds

SYSTEM = "Answer briefly."
PARAPHRASE = "Background: {ctx}\nRewrite the background above in your own words."
VERIFY = (
    "Background: {ctx}\nClaim: {claim}\n"
    "Is the claim true according to the background? Answer Yes or No."
)


@dataclass(frozen=True)
class Example:
    """One training example: the document embedding ``(384,)``, the user turn with a ``{ctx}``
    slot (other fields already filled), the target text and, for distillation, the document
    text."""

    vec: Any
    prompt: str
    target: str
    doc_text: str = ""


def chat_prompt(tokenizer: Any, user: str) -> str:
    """The chat-templated prompt the generator builds (short system turn, generation prompt)."""
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def user_text(ex: Example, xrag: bool = True) -> str:
    """The user turn with the context slot filled by the xRAG token (or the document text)."""
    return ex.prompt.replace("{ctx}", encode_token(ex.vec) if xrag else ex.doc_text)


def _sequence(lm: Any, tok: Any, proj: Any, prompt_text: str, target: str, max_target: int):
    """``(embeds (L, H), labels (L,))``: prompt (xRAG tokens spliced) + target + end of turn."""
    torch = require("torch", feature="xRAG training")
    emb, _, _ = splice_embeds(lm, tok, proj, prompt_text)
    tgt = tok(target, add_special_tokens=False)["input_ids"][:max_target] + [tok.eos_token_id]
    t = torch.tensor(tgt, dtype=torch.long, device=emb.device)
    full = torch.cat([emb[0], lm.get_input_embeddings()(t)], dim=0)
    labels = torch.cat([torch.full((emb.shape[1],), -100, device=emb.device), t])
    return full, labels


def _pad(seqs: Sequence[tuple[Any, Any]]) -> tuple[Any, Any, Any]:
    """Right-pad ``(embeds (L_i, H), labels (L_i,))`` to ``(B, L, H)``, ``(B, L)``, mask."""
    torch = require("torch", feature="xRAG training")
    n = max(e.shape[0] for e, _ in seqs)
    h = seqs[0][0].shape[1]
    emb = torch.zeros(len(seqs), n, h, dtype=seqs[0][0].dtype)
    labels = torch.full((len(seqs), n), -100, dtype=torch.long)
    mask = torch.zeros(len(seqs), n, dtype=torch.long)
    for i, (e, lab) in enumerate(seqs):
        emb[i, : len(e)] = e
        labels[i, : len(lab)] = lab
        mask[i, : len(e)] = 1
    return emb, labels, mask


def batch_loss(
    lm: Any,
    tok: Any,
    proj: Any,
    batch: Sequence[Example],
    max_target: int = 48,
    alpha_kl: float = 0.0,
    alpha_nll: float = 1.0,
) -> Any:
    """The loss of one batch (a scalar tensor with gradients into ``proj`` only)."""
    torch = require("torch", feature="xRAG training")
    F = torch.nn.functional
    seqs = [
        _sequence(lm, tok, proj, chat_prompt(tok, user_text(ex, xrag=True)), ex.target, max_target)
        for ex in batch
    ]
    emb, labels, mask = _pad(seqs)
    logits = lm(inputs_embeds=emb, attention_mask=mask).logits[:, :-1]
    gold = labels[:, 1:]
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), gold.reshape(-1), ignore_index=-100)
    if alpha_kl <= 0:
        return alpha_nll * nll
    kl = torch.zeros((), dtype=logits.dtype)
    for i, ex in enumerate(batch):  # teacher: the same LM reading the document text
        with torch.no_grad():
            prompt = chat_prompt(tok, user_text(ex, xrag=False))
            t_emb, t_lab = _sequence(lm, tok, proj, prompt, ex.target, max_target)
            t_logits = lm(inputs_embeds=t_emb[None]).logits[0, :-1]
        n = int((t_lab != -100).sum())
        s_pos = (gold[i] != -100).nonzero().squeeze(-1)
        t_lp = F.log_softmax(t_logits[-n:], dim=-1)
        s_lp = F.log_softmax(logits[i, s_pos], dim=-1)
        kl = kl + F.kl_div(s_lp, t_lp, log_target=True, reduction="batchmean")
    return alpha_nll * nll + alpha_kl * kl / len(batch)


def freeze(lm: Any) -> Any:
    """The LLM in eval mode with no parameter gradients (xRAG keeps it frozen)."""
    lm.eval()
    lm.requires_grad_(False)
    return lm
