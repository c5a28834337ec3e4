"""MATRIX-Gen: instruction data written by the agents of simulated social scenes (the MATRIX-Gen
follow-up of Pang et al.'s MATRIX, ICML 2024, arXiv 2402.05699; simulator adapted from
ShuoTang123/MATRIX @ 5cea242, see ``synth/simulation.py``).

Scenes are built and simulated as in MATRIX (seeded by ``topics``, a ``questions`` file, or the
user turns of the client's records); then every agent of a scene (the ego and the others) poses
one instruction, in view of the scene and its own memory, under a ``requirement``: ``general``,
``safety`` (risk- and ethics-related requests), ``difficulty`` (requests needing multi-step
reasoning) or ``multi_turn`` (a first question, the answer, a follow-up question and its answer:
a 2-user-turn conversation). The generator answers them: SFT records. ``output: dpo`` samples two
answers to the (last) instruction with two seeds and ranks them with the generator as a pairwise
judge, asked twice with the answers' positions swapped: only consistent verdicts are kept
(inconsistent, unparseable and identical pairs are dropped and counted).

The MATRIX-Gen paper's code is not released (a README only): every prompt (``instruction_*``,
``followup``, ``judge`` in ``prompts/matrix/``), the DPO construction and the filters are our
choices, UNVERIFIED.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from fedtune.schema import Section
from fedtune.synth.diversity import diversity_report
from fedtune.synth.generation import GENERATORS, TextGenerator
from fedtune.synth.matrix import (
    build_scenes,
    read_questions,
    simulation_summary,
    user_turn,
)
from fedtune.synth.registry import SYNTHESIZERS, Synthesis
from fedtune.synth.simulation import Calls, Simulator, memory_text, prompt

NO_ADVICE = "(no advice given yet)"


class MatrixGenParams(Section):
    """Instructions posed by simulated agents, answered (SFT) or answered twice and judged (DPO)."""

    agents: int = Field(3, ge=1)  # other agents besides the ego (authors' MATRIX: 5)
    steps: int = Field(3, ge=1)  # actions of the ego's plan (authors' MATRIX: 5)
    requirement: Literal["general", "safety", "multi_turn", "difficulty"] = "general"
    output: Literal["sft", "dpo"] = "sft"
    topics: list[str] | None = None  # scene seeds; else ``questions``; else the client's user turns
    questions: str | None = None  # a file of seed questions (as matrix's ``questions``)
    generation: GENERATORS.choice(default="local") = {"backend": "local", "max_new_tokens": 64, "temperature": 0.2}
    max_retries: int = Field(5, ge=0)
    memory_limit: int = Field(3, ge=1)
    seed: int = 0


def clean(text: str) -> str:
    """An instruction as written: its first non-empty line, without a label or quotes."""
    line = next((x for x in text.splitlines() if x.strip()), "")
    return re.sub(r"^\s*(?:request|question|instruction)\s*:\s*", "", line, flags=re.IGNORECASE).strip(" \"'")


def verdict(text: str) -> str | None:
    """"A" or "B" when the judge's answer starts with it (optionally "Response A"), else None."""
    m = re.match(r"\W*(?:Response\s+)?([AB])\b", text.strip())
    return m.group(1) if m else None


def judged(first: str, swapped: str) -> int | None:
    """Index of the better answer (0: A, 1: B) when the two verdicts agree once the swap is undone."""
    if (first, swapped) == ("A", "B"):
        return 0
    if (first, swapped) == ("B", "A"):
        return 1
    return None


def judge_asks(pairs: list[tuple[dict, str, str]], swap: bool) -> list[tuple[int, str]]:
    """The judge's prompts for (item, answer A, answer B) pairs; ``swap`` shows B first."""
    return [(it["scene"], prompt("judge", instruction=it["chat"][-1]["content"], a=b if swap else a, b=a if swap else b))
            for it, a, b in pairs]


@SYNTHESIZERS.register("matrix_gen", MatrixGenParams)
class MatrixGen(Synthesis):
    """MATRIX-Gen: each simulated agent poses an instruction; answered (sft) or judged pairs (dpo)."""

    def __init__(self, params: MatrixGenParams, generator: TextGenerator, model=None, tokenizer=None,
                 num_clients: int = 1):
        self.params, self.generator, self.model, self.tokenizer = params, generator, model, tokenizer
        self.questions = read_questions(params.questions) if params.questions else None
        self.transcripts: list[dict] = []  # one per scene: {"id", "client", "premise", "calls"}

    def _premises(self, records: list[dict]) -> list[str]:
        if self.params.topics is not None:
            return list(self.params.topics)
        if self.questions is not None:
            return list(self.questions)
        return [q for q in (user_turn(r) for r in records) if isinstance(q, str) and q.strip()]

    def synthesize(self, records: list[dict], client: str, sizes=None) -> tuple[list[dict], list[dict]]:
        """``records`` plus the generated ones."""
        p = self.params
        premises = self._premises(records)
        calls = Calls(self.generator, p.seed, len(premises))
        # scenes, simulated; then one instruction per agent
        built = build_scenes(calls, premises, [NO_ADVICE] * len(premises), p.agents, p.steps) if premises else []
        scenes = Simulator(calls, p.max_retries, p.memory_limit).run([b["scene"] for b in built])
        posers = [(i, agent) for i, s in enumerate(scenes) for agent in [s.ego, *s.others]]
        written = calls.ask("instruction", [(i, prompt(f"instruction_{p.requirement}", situation=built[i]["situation"],
                                                       name=a.name, status=a.profile.status,
                                                       memory=memory_text(a.memory))) for i, a in posers])
        drops = {"empty_instruction": 0, "duplicate": 0, "empty_answer": 0, "identical_answers": 0,
                 "no_verdict": 0, "inconsistent": 0}
        items, seen = [], set()
        for (i, agent), text in zip(posers, written):
            q = clean(text)
            reason = "empty_instruction" if not q else "duplicate" if q.lower() in seen else None
            if reason:
                drops[reason] += 1
                continue
            seen.add(q.lower())
            items.append({"scene": i, "agent": agent, "chat": [{"role": "user", "content": q}]})
        # answers (multi_turn: answer, follow-up question, and the conversation goes on)
        if p.requirement == "multi_turn":
            items = self._follow_up(calls, items, drops)
        made = self._answered(calls, items, drops)
        for i, premise in enumerate(premises):
            self.transcripts.append({"id": f"matrix_gen/{client}/{len(self.transcripts)}", "client": client,
                                     "premise": premise, "calls": calls.transcripts[i]})
        first_id = len(self.transcripts) - len(premises)
        for record, item in made:
            i = item["scene"]
            record["synth"] = {"method": "matrix_gen", "requirement": p.requirement, "premise": premises[i],
                               "agent": item["agent"].name, "transcript": self.transcripts[first_id + i]["id"],
                               "simulation": simulation_summary(scenes[i]), **record.get("synth", {})}
        report = [{"client": client, "step": f"synth.matrix_gen.{reason}", "dropped": n}
                  for reason, n in drops.items() if n]
        # how varied the instructions are against the seeds they grew from
        instructions = [it["chat"][0]["content"] for _, it in made]
        report.append({"client": client, "step": "synth.matrix_gen", "kept": len(made), "generated": len(posers),
                       "dropped": len(posers) - len(made),
                       "diversity": diversity_report(instructions, premises, self.model, self.tokenizer)})
        return records + [r for r, _ in made], report

    def _follow_up(self, calls: Calls, items: list[dict], drops: dict) -> list[dict]:
        """multi_turn: each first question is answered and its agent asks a follow-up."""
        answers = calls.ask("first_answer", [(it["scene"], it["chat"]) for it in items])
        asks = [(it["scene"], prompt("followup", name=it["agent"].name, status=it["agent"].profile.status,
                                     question=it["chat"][0]["content"], answer=a)) for it, a in zip(items, answers)]
        follow = [clean(t) for t in calls.ask("followup", asks)]
        kept = []
        for it, answer, q in zip(items, answers, follow):
            if not answer or not q:
                drops["empty_answer" if not answer else "empty_instruction"] += 1
                continue
            it["chat"] += [{"role": "assistant", "content": answer}, {"role": "user", "content": q}]
            kept.append(it)
        return kept

    def _answered(self, calls: Calls, items: list[dict], drops: dict) -> list[tuple[dict, dict]]:
        """(record, item) per kept item: sft answers the last user turn; dpo answers it twice
        (two seeds) and keeps position-consistent judge verdicts."""
        first = calls.ask("answer", [(it["scene"], it["chat"]) for it in items])
        if self.params.output == "sft":
            made = []
            for it, a in zip(items, first):
                if not a:
                    drops["empty_answer"] += 1
                    continue
                record = {"messages": it["chat"] + [{"role": "assistant", "content": a}], "category": "matrix_gen"}
                made.append((record, it))
            return made
        second = calls.ask("answer", [(it["scene"], it["chat"]) for it in items], attempt=1)
        pairs = []
        for it, a, b in zip(items, first, second):
            reason = "empty_answer" if not a or not b else "identical_answers" if a == b else None
            if reason:
                drops[reason] += 1
            else:
                pairs.append((it, a, b))
        forward = calls.ask("judge", judge_asks(pairs, swap=False))
        backward = calls.ask("judge", judge_asks(pairs, swap=True), attempt=1)
        made = []
        for (it, a, b), v1, v2 in zip(pairs, forward, backward):
            first_v, swapped_v = verdict(v1), verdict(v2)
            if first_v is None or swapped_v is None:
                drops["no_verdict"] += 1
                continue
            best = judged(first_v, swapped_v)
            if best is None:
                drops["inconsistent"] += 1
                continue
            chosen, rejected = (a, b) if best == 0 else (b, a)
            made.append(({"prompt": it["chat"], "chosen": chosen, "rejected": rejected, "category": "matrix_gen",
                          "synth": {"verdicts": [v1, v2]}}, it))
        return made
