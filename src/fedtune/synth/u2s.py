"""FedIT-U2S: turn a client's unstructured text into instruction–response pairs (Ye, Ge, Yuchi,
Chai, Wang, Chen 2024, "Leveraging Unstructured Text Data for Federated Instruction Tuning of
LLMs", arXiv 2409.07136).

For each text piece d: retrieve the K most related (context, instruction, response) examples of
a pool (TF-IDF cosine, or cosine of mean-pooled hidden states of an embedding model), prompt the
generator with them as demonstrations followed by d, parse the instruction and response it
writes, and filter: unparseable, empty or too short, and near-copies of a demonstration (TF-IDF
cosine above ``max_similarity``, 0.52 as in the sibling KnowledgeSG code). Every drop is counted.
No code of the authors was found: the prompt wording, the parser and the pool format are our
choices (UNVERIFIED), documented in docs/synthesis.md.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from fedtune.data.sources import DataError, read_source
from fedtune.schema import Section
from fedtune.synth.generation import GENERATORS, TextGenerator
from fedtune.synth.registry import SYNTHESIZERS, Synthesis

HEADER = "Based on the given context, generate one instruction and its response.\n\n"
SHOT = "### Context:\n{context}\n### Instruction:\n{instruction}\n### Response:\n{response}\n\n"


class U2SParams(Section):
    """Raw text -> instruction pairs with retrieved few-shot demonstrations."""

    # The example pool: a JSONL/JSON file of {context, instruction, response} triplets.
    examples: str
    k: int = Field(3, ge=1)  # demonstrations per piece
    # What one piece is: a whole text record, or each of its sentences (one pair per piece).
    pieces: Literal["document", "sentence"] = "document"
    retriever: Literal["tfidf", "embedding"] = "tfidf"
    # embedding retriever: a model name or path (mean-pooled last hidden states); null = the run's model
    embedding_model: str | None = None
    generation: GENERATORS.choice(default="local") = {"backend": "local", "max_new_tokens": 96}
    min_length: int = Field(4, ge=1)  # characters, for the instruction and the response each
    max_similarity: float = Field(0.52, gt=0, le=1)  # TF-IDF cosine to a demonstration = a near-copy


def read_pool(path: str) -> list[dict]:
    """The example pool (any file fedtune reads); each row needs non-empty context, instruction
    and response strings."""
    try:
        table = read_source(path)
    except DataError as e:
        raise DataError(f"synth.examples: {e}") from None
    for row, where in zip(table.rows, table.where):
        for key in ("context", "instruction", "response"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise DataError(f"synth.examples: {where}: field '{key}' must be a non-empty string")
    return table.rows


def prompt(piece: str, shots: list[dict]) -> str:
    """The few-shot prompt: the header, K demonstrations, then the piece with an open instruction."""
    return HEADER + "".join(SHOT.format(**s) for s in shots) + f"### Context:\n{piece}\n### Instruction:\n"


_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_RESPONSE = re.compile(r"#+\s*Response\s*:?", re.IGNORECASE)
_INSTRUCTION = re.compile(r"^\s*#+\s*Instruction\s*:?\s*", re.IGNORECASE)


def parse(text: str) -> tuple[str, str] | None:
    """(instruction, response) from a generated continuation, or None when it has no response
    marker; the response ends at the next ``###`` section (a further context the model began)."""
    parts = _RESPONSE.split(text, maxsplit=1)
    if len(parts) != 2:
        return None
    instruction = _INSTRUCTION.sub("", parts[0]).strip()
    response = parts[1].split("###", 1)[0].strip()
    return instruction, response


def tfidf_similarity(queries: list[str], documents: list[str]):
    """Cosine similarities (queries × documents) of TF-IDF vectors fitted on both."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import linear_kernel

    vectors = TfidfVectorizer().fit(queries + documents)
    return linear_kernel(vectors.transform(queries), vectors.transform(documents))


def embedding_similarity(queries: list[str], documents: list[str], model, tokenizer):
    """Cosine similarities of mean-pooled last hidden states (padding excluded)."""
    import torch

    from fedtune.models.device import model_device
    from fedtune.models.logprobs import causal_parts

    decoder, _ = causal_parts(model)

    @torch.no_grad()
    def embed(texts):
        out = []
        for text in texts:
            ids = torch.tensor([tokenizer(text, add_special_tokens=False).input_ids[:512] or [tokenizer.eos_token_id]],
                               device=model_device(model))
            out.append(decoder(input_ids=ids).last_hidden_state[0].mean(0))
        return torch.nn.functional.normalize(torch.stack(out), dim=-1)

    return (embed(queries) @ embed(documents).T).cpu().numpy()


@SYNTHESIZERS.register("u2s", U2SParams)
class U2S(Synthesis):
    """FedIT-U2S: each text piece becomes one instruction pair, written with retrieved examples."""

    def __init__(self, params: U2SParams, generator: TextGenerator, model=None, tokenizer=None, num_clients: int = 1):
        self.params, self.generator, self.model, self.tokenizer = params, generator, model, tokenizer
        self.pool = read_pool(params.examples)
        self._embedding = None  # the embedding retriever's model, once loaded

    def _embedder(self):
        """(model, tokenizer) of the embedding retriever: ``embedding_model``, loaded once, or the run's."""
        if self.params.embedding_model is None:
            return self.model, self.tokenizer
        if self._embedding is None:
            from fedtune.models.device import model_device, resolve_device
            from fedtune.models.loader import load_model

            loaded = load_model(self.params.embedding_model)  # on the run model's device
            device = model_device(self.model) if self.model is not None else resolve_device("auto")
            self._embedding = (loaded.model.to(device), loaded.tokenizer)
        return self._embedding

    def _retrieve(self, pieces: list[str]) -> list[list[int]]:
        """Per piece, the pool positions of its K most similar contexts, most similar first
        (ties: the pool's order)."""
        contexts = [e["context"] for e in self.pool]
        if self.params.retriever == "tfidf":
            sim = tfidf_similarity(pieces, contexts)
        else:
            sim = embedding_similarity(pieces, contexts, *self._embedder())
        k = min(self.params.k, len(self.pool))
        return [sorted(range(len(contexts)), key=lambda j: (-row[j], j))[:k] for row in sim]

    def synthesize(self, records: list[dict], client: str, sizes=None) -> tuple[list[dict], list[dict]]:
        """Each text record becomes an SFT record (or is dropped, counted); others pass through."""
        texts = [r for r in records if "text" in r]
        kept = [r for r in records if "text" not in r]
        if self.params.pieces == "sentence":
            texts = [{**r, "text": piece} for r in texts for piece in _SENTENCE.split(r["text"]) if piece.strip()]
        if not texts:
            return kept, []
        shots = self._retrieve([r["text"] for r in texts])
        prompts = [prompt(r["text"], [self.pool[j] for j in s]) for r, s in zip(texts, shots)]
        outputs = self.generator.generate([[{"role": "user", "content": p}] for p in prompts], use_adapter=False)
        drops = {"unparseable": 0, "too_short": 0, "near_copy": 0}
        parsed = [parse(o) for o in outputs]
        candidates = [(i, p) for i, p in enumerate(parsed) if p is not None]
        drops["unparseable"] = len(parsed) - len(candidates)
        long_enough = [(i, p) for i, p in candidates if min(len(p[0]), len(p[1])) >= self.params.min_length]
        drops["too_short"] = len(candidates) - len(long_enough)
        # near-copies: TF-IDF (fitted on the client's generations and the whole pool) cosine to a shot
        demos = [f"{e['instruction']} {e['response']}" for e in self.pool]
        sim = tfidf_similarity([f"{a} {b}" for _, (a, b) in long_enough], demos) if long_enough else None
        for n, (i, (instruction, response)) in enumerate(long_enough):
            if max(sim[n, j] for j in shots[i]) > self.params.max_similarity:
                drops["near_copy"] += 1
                continue
            kept.append({"messages": [{"role": "user", "content": instruction},
                                      {"role": "assistant", "content": response}],
                         "category": texts[i].get("category", "synthesized"),
                         "synth": {"method": "u2s", "source": texts[i]["text"], "generated": outputs[i],
                                   "shots": [self.pool[j]["instruction"] for j in shots[i]]}})
        made = len(long_enough) - drops["near_copy"]
        report = [{"client": client, "step": f"synth.u2s.{reason}", "dropped": n} for reason, n in drops.items() if n]
        report.append({"client": client, "step": "synth.u2s", "kept": made, "generated": len(texts),
                       "dropped": len(texts) - made})
        return kept, report
