"""KnowledgeSG: the server synthesizes training data with the clients' DP-trained model and a
professional model's knowledge (Wang, Liang, Ye, Chai, Chen, Wang, EMNLP 2024, arXiv 2410.05725;
authors' code ``wwh0411/KnowledgeSG``: ``server/prompter.py``, ``server/baselines_generate.py``,
``server/post_generate.py``, ``server/inferencer.py``).

Clients train with sample-level DP (``privacy.sample_level``) and send only their adapter. After
the last round the server, holding the aggregated DP adapter:
1. writes instructions with it from the authors' prompts (``prompting``): ``icl`` — three random
   demonstrations and "generate a new and unique example" (the authors' ``icl``/``dp-gene``);
   ``self_instruct`` — instructions first from three demonstrations' instructions, then (without
   a professional) outputs by the same model with demonstrations (their ``dp-instruct-icl``, the
   data their KnowledgeSG step starts from);
2. parses ``##instruction:`` / ``##output:`` as their ``extract_answer*`` do, and drops empty or
   1-character texts and near-copies: TF-IDF cosine of the instruction to a demonstration's
   > ``similarity_max`` (0.52; the vectorizer fitted on the pair, as their ``calculate_similarity``);
3. with a ``professional``: optionally vets each instruction with it (``vet``; the paper describes
   professional filtering but the released code has none: our yes/no prompt, UNVERIFIED), then
   has it answer each instruction through its domain prompt (the authors' medical and financial
   prompts are presets) — the knowledge distillation step (their ``recreate_dataset_only``);
4. fine-tunes the global adapter (``start: global``; ``initial`` = the run's start) on the result
   for ``steps`` SFT steps, non-privately, as the paper's final step.

Without a professional the run is the paper's baseline of the same prompting (DP-Gene /
DP-Instruct); the DP model alone is the round's ``eval_before``. Every attempt, its parse and its
fate is written to ``<run>/synth/knowledgesg.jsonl``.

Where we differ: the authors draw the demonstrations from the sampled *training* data of the
client, which would put private records into the server's prompts outside the DP guarantee; here
they are data the server holds (``examples``; on the built-in suite, fact and skill records about
invented people and words no client holds). The authors' model reads raw text; ours is prompted
through the generation layer (chat template), so a reply that restates the leading
``###example:`` marker has it stripped before parsing (our addition), and exact duplicate
instructions are dropped and counted (our addition). With a professional, the self-instruct
outputs of the DP model are not generated at all (the authors generate and then discard them).
Privacy: the synthetic set and the final adapter are post-processing of the DP adapters, so the
clients' (ε, δ) covers them; summary.json says so (or that nothing is covered without DP).
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from fedtune.client.server_tuning import ServerTuner
from fedtune.data.formats import read_sft_file
from fedtune.data.suite import public_fact_examples, public_skill_examples
from fedtune.models.adapters.state import set_adapter
from fedtune.schema import ConfigError, Section
from fedtune.synth.generation import GENERATORS, build_generator
from fedtune.synth.registry import SYNTHESIZERS, ServerSynthesis

# the authors' prompts (server/prompter.py: map_function, map_self_instruct_1/2, map_med, map_fin)
ICL_SHOT = "###example:\n\n##instruction: \n{instruction} \n##output:\n{output}\n\n"
ICL = ("Based on the following examples, please generate a new and unique example that is different and "
       "follows the underlying pattern or theme. Try to make your generation as diverse as possible.\n\n"
       "{fewshot}###example:")
INSTRUCTION_SHOT = "###example:\n\n##instruction: {instruction}\n"
OUTPUT = ("Come up with examples for the following tasks. Try to generate multiple examples when possible. If the "
          "task doesn't require additional input, you can generate the output directly.\n{fewshot}\n###example:"
          "\n\n##instruction: \n{instruction}\n##output:")
DOMAIN_PROMPTS = {
    "plain": "{x}",
    "medical": ("If you are a doctor, please answer the medical questions based on the patient's description. "
                "\n\nPatient: {x}\nChatDoctor: "),
    "financial": ("Instruction: What is the sentiment of this news? Please choose an answer from "
                  "{negative/neutral/positive}\n{x}\nAnswer: "),
}
VET = "Is the following a clear instruction that can be answered? Answer only yes or no.\n\nInstruction: {x}"
MARKER = "###example:"


class KnowledgeSGParams(Section):
    """Server-side synthesis from the DP-trained global adapter, answered by a professional model."""

    # the server's demonstrations (any SFT file); null on the built-in suite = records about
    # invented people and words no client holds
    examples: str | None = None
    n: int = Field(64, ge=1)  # generation attempts (the authors' --round)
    icl_examples: int = Field(3, ge=1)  # demonstrations per prompt
    prompting: Literal["icl", "self_instruct"] = "self_instruct"
    similarity_max: float = Field(0.52, gt=0, le=1)  # TF-IDF cosine to a demonstration = a near-copy
    # the DP model's sampling (the run's model with the global adapter; authors: vLLM T=0.7)
    generation: GENERATORS.choice(default="local") = {"backend": "local", "max_new_tokens": 96, "temperature": 0.7}
    # who answers the instructions: a model name (+ adapter) or a served endpoint; null = the DP
    # model's own outputs (the paper's DP-Gene / DP-Instruct baselines)
    professional: GENERATORS.choice(optional=True) = None
    # the professional's prompt around an instruction {x}: a preset (plain, medical, financial) or text
    domain_prompt: str = "plain"
    vet: bool = False  # ask the professional whether each instruction is valid; keep the yes
    steps: int = Field(20, ge=1)  # SFT steps on the synthetic set
    start: Literal["global", "initial"] = "global"  # fine-tune the DP global adapter, or the run's start
    lr: float | None = Field(None, gt=0)  # None = train.lr
    batch_size: int | None = Field(None, ge=1)  # None = train.batch_size

    @field_validator("generation")
    @classmethod
    def _the_dp_model(cls, v):
        if v.backend != "local" or getattr(v, "model", None) or getattr(v, "adapter", None):
            raise ValueError("KnowledgeSG generates with the DP-trained global model: use the local backend "
                             "and leave model and adapter unset")
        return v

    @field_validator("professional")
    @classmethod
    def _another_model(cls, v):
        if v is not None and v.backend == "local" and not v.model:
            raise ValueError("name the professional model (professional.model); unset it would be the DP model "
                             "itself — for the baseline without a professional set professional: null")
        return v

    @field_validator("domain_prompt")
    @classmethod
    def _has_slot(cls, v):
        if v not in DOMAIN_PROMPTS and "{x}" not in v:
            raise ValueError(f"a preset ({', '.join(DOMAIN_PROMPTS)}) or a text with {{x}} where the instruction goes")
        return v


# ------------------------------------------------------------------ prompts and parsing


def pair_of(record: dict) -> dict:
    """{instruction, output} of an SFT record (its last user and assistant turns)."""
    turns = record["messages"]
    return {"instruction": next(t["content"] for t in reversed(turns) if t["role"] == "user"),
            "output": next(t["content"] for t in reversed(turns) if t["role"] == "assistant")}


def icl_prompt(demos: list[dict]) -> str:
    return ICL.format(fewshot="".join(ICL_SHOT.format(**d) for d in demos))


def instruction_prompt(demos: list[dict]) -> str:
    return "".join(INSTRUCTION_SHOT.format(instruction=d["instruction"]) for d in demos) + MARKER


def output_prompt(demos: list[dict], instruction: str) -> str:
    return OUTPUT.format(fewshot="".join(ICL_SHOT.format(**d) for d in demos), instruction=instruction)


def _first_example(text: str) -> str:
    """The text before the next example (a leading restated marker removed first)."""
    text = text.lstrip()
    if text.startswith(MARKER):
        text = text[len(MARKER):]
    return text.split(MARKER)[0]


def parse_example(text: str) -> tuple[str, str] | None:
    """(instruction, output) of an ICL generation, or None (the authors' ``extract_answer``: the
    output must not run into a next example or instruction)."""
    body = _first_example(text)
    if "##output:" not in body or "##instruction:" not in body.split("##output:")[0]:
        return None
    output = body.split("##output:")[1].strip()
    if any(m in output for m in ("###example", "### example", "##instruction", "##Instruction")):
        return None
    return body.split("##output:")[0].split("##instruction:")[1].strip(), output


def parse_instruction(text: str) -> str | None:
    """The instruction of a self-instruct stage-1 generation (``extract_answer_instruct``)."""
    body = _first_example(text)
    return body.split("##instruction:")[1].strip() if "##instruction:" in body else None


def parse_output(text: str) -> str:
    """The output of a stage-2 generation: up to the next marker (``extract_answer_output``)."""
    return _first_example(text).split("##")[0].strip()


def pair_similarity(a: str, b: str) -> float | None:
    """TF-IDF cosine of two texts with the vectorizer fitted on the pair (the authors'
    ``calculate_similarity``); None when neither has a word to weigh."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity

    try:
        m = TfidfVectorizer().fit_transform([a, b])
    except ValueError:  # empty vocabulary
        return None
    return float(cosine_similarity(m[0:1], m[1:2])[0, 0])


def near_copy(instruction: str, demos: list[dict], limit: float) -> bool:
    """Whether ``instruction`` is too similar to a demonstration (unscorable counts as similar, as
    the authors' ``except: sign = 1``)."""
    scores = [pair_similarity(instruction, d["instruction"]) for d in demos]
    return any(s is None or s > limit for s in scores)


def is_yes(text: str) -> bool:
    return text.strip().lower().lstrip("\"'*").startswith("yes")


# -------------------------------------------------------------------------- the method


@SYNTHESIZERS.register("knowledgesg", KnowledgeSGParams)
class KnowledgeSG(ServerSynthesis):
    """KnowledgeSG: after the last round the server writes instructions with the DP global adapter,
    a professional model answers them, and the global adapter is fine-tuned on the pairs."""

    def __init__(self, cfg, model, tokenizer, store, run_path: Path):
        self.cfg, self.params, self.model, self.run_path = cfg, cfg.synth, model, run_path
        self.pool = self._demonstrations()
        if len(self.pool) < self.params.icl_examples:
            raise ConfigError(f"synth.examples: {len(self.pool)} demonstrations, fewer than "
                              f"synth.icl_examples ({self.params.icl_examples})")
        self.generator = build_generator(self.params.generation, model, tokenizer)
        self._professional = None  # loaded on first use
        self.tuner = ServerTuner(cfg, model, tokenizer, store, self.params.batch_size)

    def _demonstrations(self) -> list[dict]:
        p, cfg = self.params, self.cfg
        if p.examples:
            return [pair_of(r) for r in read_sft_file(p.examples)]
        facts = public_fact_examples(max(p.icl_examples, 12), cfg.seed)
        skills = public_skill_examples(cfg.data.suite, cfg.federation.num_clients, cfg.seed, per_rule=2)
        return [pair_of(r) for r in facts + skills]

    def professional(self):
        if self._professional is None:
            self._professional = build_generator(self.params.professional)
        return self._professional

    def apply(self, round: int, global_adapter, initial_adapter) -> tuple[object, dict]:
        """Synthesize from ``global_adapter`` and fine-tune on the result."""
        p, started = self.params, time.perf_counter()
        set_adapter(self.model, global_adapter)
        rng = random.Random(f"fedtune-knowledgesg-{self.cfg.seed}-{round}")
        shots = [rng.sample(range(len(self.pool)), p.icl_examples) for _ in range(p.n)]
        seed = self.cfg.seed * 1000 + round
        attempts = self._instructions(shots, seed)
        candidates = [a for a in attempts if a["kept"]]
        if p.professional is not None:  # knowledge distillation: the professional answers
            self._distill(candidates, seed)
        elif p.prompting == "self_instruct":  # the baseline: the DP model writes the outputs too
            demos = [self._demos(rng.sample(range(len(self.pool)), p.icl_examples)) for _ in candidates]
            outputs = self.generator.generate([[{"role": "user", "content": output_prompt(d, a["instruction"])}]
                                               for d, a in zip(demos, candidates)], seed=seed)
            for a, text in zip(candidates, outputs):
                a["raw_output"], a["output"] = text, parse_output(text)
                _drop_if(a, len(a["output"]) <= 1, "empty_output")
        records = [{"messages": [{"role": "user", "content": a["instruction"]},
                                 {"role": "assistant", "content": a["output"]}], "category": "synth:knowledgesg"}
                   for a in attempts if a["kept"]]
        self._save(attempts)
        drops: dict[str, int] = {}
        for a in attempts:
            if not a["kept"]:
                drops[a["dropped"]] = drops.get(a["dropped"], 0) + 1
        report = {"method": "knowledgesg", "prompting": p.prompting, "professional": p.professional is not None,
                  "attempts": p.n, "kept": len(records), "dropped": drops,
                  "seconds_generating": self.generator.seconds
                  + (self._professional.seconds if self._professional is not None else 0.0)}
        adapter = global_adapter
        if records:
            start = global_adapter if p.start == "global" else initial_adapter
            adapter, report["loss"] = self.tuner.tune(round, start, records, p.steps, p.lr)
        else:
            report["skipped"] = "no synthetic pair survived the filters; the global adapter is kept"
        report["seconds"] = time.perf_counter() - started
        return adapter, report

    def _demos(self, positions: list[int]) -> list[dict]:
        return [self.pool[j] for j in positions]

    def _instructions(self, shots: list[list[int]], seed: int) -> list[dict]:
        """One attempt per shot list: the DP model's generation, parsed and filtered."""
        p = self.params
        make = icl_prompt if p.prompting == "icl" else instruction_prompt
        texts = self.generator.generate([[{"role": "user", "content": make(self._demos(s))}] for s in shots], seed=seed)
        seen: set[str] = set()
        attempts = []
        for s, text in zip(shots, texts):
            a = {"shots": s, "generated": text, "kept": True}
            if p.prompting == "icl":
                parsed = parse_example(text)
                a["instruction"], a["output"] = parsed if parsed else ("", "")
            else:
                a["instruction"], a["output"] = parse_instruction(text) or "", ""
            _drop_if(a, not a["instruction"] and not a["output"], "unparseable")
            _drop_if(a, len(a["instruction"]) <= 1 or (p.prompting == "icl" and len(a["output"]) <= 1), "too_short")
            _drop_if(a, near_copy(a["instruction"], self._demos(s), p.similarity_max), "near_copy")
            _drop_if(a, a["instruction"] in seen, "duplicate")
            seen.add(a["instruction"])
            attempts.append(a)
        return attempts

    def _distill(self, candidates: list[dict], seed: int) -> None:
        """The professional vets (optionally) and answers each surviving instruction."""
        p = self.params
        if p.vet:
            verdicts = self.professional().generate(
                [[{"role": "user", "content": VET.replace("{x}", a["instruction"])}] for a in candidates], seed=seed)
            for a, v in zip(candidates, verdicts):
                a["vet"] = v
                _drop_if(a, not is_yes(v), "vetoed")
            candidates = [a for a in candidates if a["kept"]]
        template = DOMAIN_PROMPTS.get(p.domain_prompt, p.domain_prompt)
        answers = self.professional().generate(
            [[{"role": "user", "content": template.replace("{x}", a["instruction"])}] for a in candidates], seed=seed)
        for a, text in zip(candidates, answers):
            a["dp_output"], a["output"] = a["output"], text.strip()
            _drop_if(a, len(a["output"]) <= 1, "empty_output")

    def _save(self, attempts: list[dict]) -> None:
        out = self.run_path / "synth" / "knowledgesg.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(json.dumps(a) + "\n" for a in attempts), encoding="utf-8")

    def summary(self, privacy: dict | None, report: dict) -> dict:
        """What summary.json says: the counts of ``report`` (the last row's) and what the clients' ε covers."""
        sample = (privacy or {}).get("sample_level")
        client = (privacy or {}).get("client_level")
        if sample or client:
            covers = ("the client adapters and, by post-processing, the DP model's generated instructions, the "
                      "synthetic set and the final adapter (the professional model and the server's "
                      "demonstrations are not the clients' data)")
            guarantee = {"sample_level": {"epsilon": sample["epsilon_max"], "delta": sample["delta"]}} if sample \
                else {"client_level": client}
        else:
            covers = "nothing: the clients trained without DP (privacy.sample_level), so the synthetic data may " \
                     "reveal their records"
            guarantee = {}
        return {"method": "knowledgesg", **{k: report.get(k) for k in ("kept", "dropped", "attempts")},
                "data": "synth/knowledgesg.jsonl", "privacy": {**guarantee, "covers": covers}}


def _drop_if(attempt: dict, condition: bool, reason: str) -> None:
    """Mark an attempt dropped for ``reason`` (the first reason that applies is the one counted)."""
    if attempt["kept"] and condition:
        attempt["kept"], attempt["dropped"] = False, reason
