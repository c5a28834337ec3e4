"""MATRIX: self-alignment by social-scene simulation (Pang et al., ICML 2024, arXiv 2402.05699;
code ShuoTang123/MATRIX @ 5cea242).

Per seed question: the generator's initial answer; a role-and-plan chain (the situation behind the
question, the asker's role — the ego —, what follows if the answer is followed, the roles
involved, the ``agents`` most important of them, a plan of ``steps`` actions); agent profiles; the
simulation (``synth/simulation.py``); a summary of the modulator's critiques (the consequences);
and the answer revised in view of the question and those consequences. ``output: sft`` gives
(question, revised answer); ``output: dpo`` gives prompt = question, chosen = revised, rejected =
initial — a pairing the paper does not describe (it fine-tunes on the revised answers): our
design choice, UNVERIFIED.

Prompts (``prompts/matrix/``, our own shorter wording): ``situation``, ``ego``, ``future``,
``roles``, ``select``, ``plan`` are adapted from the authors' ``situation_imagine``,
``generate_ego``, ``situation_future``, ``situation_role``, ``situation_role_select``,
``plan_generate`` (src/role_plan.py); ``outcome`` from ``unaligned_incidents_summary``;
``revise`` from the revise prompt of src/revise_answer.py (we skip its first step, summarizing
the initial answer, and its few-shot example). Defaults are smaller than the authors' 5 agents
and 5 steps so that a CPU run stays short. All calls of a client's questions run together, one
batch per stage; every call is in ``self.transcripts``.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Literal

from pydantic import Field

from fedtune.data.sources import DataError, read_source
from fedtune.schema import ConfigError, Section
from fedtune.synth.generation import GENERATORS, TextGenerator
from fedtune.synth.registry import SYNTHESIZERS, Synthesis
from fedtune.synth.simulation import (
    Agent,
    Calls,
    Scene,
    Simulator,
    make_profiles,
    prompt,
)

QUESTION_FIELDS = ("question", "prompt", "instruction", "goal", "text")


class MatrixParams(Section):
    """Seed questions answered, simulated and revised."""

    agents: int = Field(3, ge=1)  # other agents besides the ego (authors: 5)
    steps: int = Field(3, ge=1)  # actions of the ego's plan (authors: 5)
    output: Literal["sft", "dpo"] = "sft"
    # a file of seed questions (.txt one per line, or JSON/JSONL/CSV with a question/prompt/
    # instruction/goal/text field); null = the user turns of the client's own records
    questions: str | None = None
    replace: bool = True  # synthesized records replace the records that seeded them (else: added)
    generation: GENERATORS.choice(default="local") = {"backend": "local", "max_new_tokens": 64, "temperature": 0.2}
    max_retries: int = Field(5, ge=0)  # new actions tried when the modulator finds one implausible
    memory_limit: int = Field(3, ge=1)  # a longer memory is summarized into one item
    seed: int = 0


def read_questions(path: str, key: str = "synth.questions") -> list[str]:
    """Seed questions from a file: each row's first question-like field (a .txt line is ``text``)."""
    try:
        rows = read_source(path).rows
    except DataError as e:
        raise ConfigError(f"{key}: {e}") from None
    questions = []
    for n, row in enumerate(rows, 1):
        text = next((row[k] for k in QUESTION_FIELDS if isinstance(row.get(k), str) and row[k].strip()), None)
        if text is None:
            raise ConfigError(f"{key}: {path} row {n}: no question (a non-empty {' / '.join(QUESTION_FIELDS)})")
        questions.append(text.strip())
    return questions


def user_turn(record: dict) -> str | None:
    """The question of a record: the first user turn of an SFT record, the last of a preference prompt."""
    if "messages" in record:
        return next((m["content"] for m in record["messages"] if m["role"] == "user"), None)
    if isinstance(record.get("prompt"), list):
        return next((m["content"] for m in reversed(record["prompt"]) if m["role"] == "user"), None)
    return record.get("prompt") if isinstance(record.get("prompt"), str) else None


def bracketed(text: str, fallback: str) -> str:
    """The first [bracketed] name, else the first line, else ``fallback`` (at most 40 characters)."""
    found = re.findall(r"\[([^\[\]]+)\]", text)
    first = found[0] if found else (text.strip().splitlines() or [""])[0]
    name = first.strip(" .*:-\"'")[:40].strip()
    return name or fallback


def numbered(text: str) -> list[str]:
    """Items of a numbered list ("1. a 2. b" on one line or several), or the non-empty lines."""
    items = [p.strip(" .,;*-\n") for p in re.split(r"(?:^|\s)\d+[.)]\s+", text) if p.strip(" .,;*-\n")]
    if len(items) > 1 or re.match(r"\s*\d+[.)]\s", text):
        return items
    return [line.strip(" .*-") for line in text.splitlines() if line.strip(" .*-")]


def pick_roles(text: str, ego: str, n: int) -> list[str]:
    """Up to ``n`` distinct role names from the select answer, the ego excluded; if none parse,
    one "Bystander"."""
    roles: list[str] = []
    for item in numbered(text):
        name = bracketed(item.split(":")[0].split(" - ")[0], "")
        if name and name.lower() != ego.lower() and name.lower() not in (r.lower() for r in roles):
            roles.append(name)
    return roles[:n] or ["Bystander"]


def build_scenes(calls: Calls, premises: list[str], advice: list[str], agents: int, steps: int) -> list[dict]:
    """The role-and-plan chain for each premise (scene i records into transcript i), then the
    profiles: [{"scene": Scene, "situation", "future"}]."""
    idx = list(range(len(premises)))
    # situation, ego role, future consequences, roles involved, the most important ones, the plan
    situations = calls.ask("situation", [(i, prompt("situation", question=premises[i])) for i in idx])
    egos = [bracketed(t, "User") for t in calls.ask("ego", [(i, prompt("ego", situation=situations[i])) for i in idx])]
    futures = calls.ask("future", [(i, prompt("future", situation=situations[i], question=premises[i],
                                              advice=advice[i])) for i in idx])
    involved = calls.ask("roles", [(i, prompt("roles", situation=situations[i], future=futures[i])) for i in idx])
    selected = calls.ask("select", [(i, prompt("select", situation=situations[i], roles=involved[i], n=agents))
                                    for i in idx])
    plans = calls.ask("plan", [(i, prompt("plan", future=futures[i], ego=egos[i], n=steps)) for i in idx])
    roles = [pick_roles(t, egos[i], agents) for i, t in enumerate(selected)]
    # the agents' profiles
    ego_profiles, other_profiles = make_profiles(calls, [(i, egos[i], premises[i]) for i in idx],
                                                 [(i, r) for i in idx for r in roles[i]])
    built, others = [], iter(other_profiles)
    for i in idx:
        plan = (numbered(plans[i]) or [futures[i] or premises[i]])[:steps]
        scene = Scene(premises[i], Agent(ego_profiles[i]), [Agent(next(others)) for _ in roles[i]], plan)
        built.append({"scene": scene, "situation": situations[i], "future": futures[i]})
    return built


def critiques_text(scene: Scene) -> str:
    return "\n".join(f"- {c['incident']} -> {c['critique']}" for c in scene.modulator.critiques)


def simulation_summary(scene: Scene) -> dict:
    """What a record keeps of its simulation."""
    return {"ego": asdict(scene.ego.profile), "agents": [asdict(a.profile) for a in scene.others],
            "plan": scene.plan, "actions": scene.actions, "critiques": scene.modulator.critiques,
            "reactions": scene.reactions, "retries": scene.modulator.retries,
            "implausible_kept": scene.modulator.implausible_kept}


@SYNTHESIZERS.register("matrix", MatrixParams)
class Matrix(Synthesis):
    """MATRIX: answers revised after simulating the social consequences of following them."""

    def __init__(self, params: MatrixParams, generator: TextGenerator, model=None, tokenizer=None,
                 num_clients: int = 1):
        self.params, self.generator = params, generator
        self.questions = read_questions(params.questions) if params.questions else None
        self.transcripts: list[dict] = []  # one per simulated question: {"id", "client", "question", "calls"}

    def _seeds(self, records: list[dict]) -> tuple[list[str], list[int | None]]:
        """The seed questions and, for each, the position of the record it came from (None: the file)."""
        if self.questions is not None:
            return list(self.questions), [None] * len(self.questions)
        found = [(user_turn(r), k) for k, r in enumerate(records)]
        found = [(q, k) for q, k in found if isinstance(q, str) and q.strip()]
        return [q for q, _ in found], [k for _, k in found]

    def synthesize(self, records: list[dict], client: str, sizes=None) -> tuple[list[dict], list[dict]]:
        """Revised records for the seed questions; with ``replace`` they take the place of the
        records that seeded them (a dropped one keeps its record)."""
        p = self.params
        questions, origin = self._seeds(records)
        if not questions:
            return records, [{"client": client, "step": "synth.matrix", "kept": 0, "generated": 0, "dropped": 0}]
        calls = Calls(self.generator, p.seed, len(questions))
        idx = range(len(questions))
        # initial answers, the scenes and their simulation
        initial = calls.ask("initial", [(i, questions[i]) for i in idx])
        built = build_scenes(calls, questions, initial, p.agents, p.steps)
        scenes = Simulator(calls, p.max_retries, p.memory_limit).run([b["scene"] for b in built])
        # the consequences, then the revised answers
        outcomes = calls.ask("outcome", [(i, prompt("outcome", ego=scenes[i].ego.name, question=questions[i],
                                                    critiques=critiques_text(scenes[i]))) for i in idx])
        revised = calls.ask("revise", [(i, prompt("revise", question=questions[i], initial=initial[i],
                                                  consequences=outcomes[i])) for i in idx])
        # records, drops counted
        made, replaced = [], set()
        drops = {"empty_revised": 0, "unchanged": 0, "empty_initial": 0}
        for i in idx:
            reason = self._drop_reason(initial[i], revised[i])
            tid = f"matrix/{client}/{len(self.transcripts)}"
            self.transcripts.append({"id": tid, "client": client, "question": questions[i], "calls": calls.transcripts[i]})
            if reason:
                drops[reason] += 1
                continue
            category = records[origin[i]].get("category", "matrix") if origin[i] is not None else "matrix"
            synth = {"method": "matrix", "question": questions[i], "initial": initial[i], "consequences": outcomes[i],
                     "critiques": [c["critique"] for c in scenes[i].modulator.critiques], "transcript": tid,
                     "simulation": simulation_summary(scenes[i])}
            made.append(self._record(questions[i], initial[i], revised[i], category, synth))
            if origin[i] is not None:
                replaced.add(origin[i])
        kept = [r for k, r in enumerate(records) if not (p.replace and k in replaced)]
        report = [{"client": client, "step": f"synth.matrix.{reason}", "dropped": n} for reason, n in drops.items() if n]
        report.append({"client": client, "step": "synth.matrix", "kept": len(made), "generated": len(questions),
                       "dropped": len(questions) - len(made), "replaced": len(records) - len(kept)})
        return kept + made, report

    def _drop_reason(self, initial: str, revised: str) -> str | None:
        if not revised:
            return "empty_revised"
        if revised == initial:
            return "unchanged"
        if self.params.output == "dpo" and not initial:
            return "empty_initial"
        return None

    def _record(self, question: str, initial: str, revised: str, category: str, synth: dict) -> dict:
        if self.params.output == "dpo":
            return {"prompt": [{"role": "user", "content": question}], "chosen": revised, "rejected": initial,
                    "category": category, "synth": synth}
        return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": revised}],
                "category": category, "synth": synth}
