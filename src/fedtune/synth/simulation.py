"""A small multi-agent social-scene simulator, the engine of MATRIX and MATRIX-Gen (Pang, Tang,
Ye, Xiong, Chen, Wang, Chen, "Self-Alignment of Large Language Models via Monopolylogue-based
Social Scene Simulation", ICML 2024, arXiv 2402.05699; code ShuoTang123/MATRIX @ 5cea242).

The authors run every agent and the modulator as threads around an API model; this is the same
scene played sequentially and deterministically (no threads, no agent framework). Each step the
ego agent takes the next action of its plan, and the ``Modulator``
(a) checks its plausibility against the modulator's memory (asked Yes/No; on No the ego writes a
    new action, up to ``max_retries`` times; if none passes the last one is kept and counted; the
    first action of a scene is not checked, as in the authors' code, since nothing happened yet),
(b) appends it to its memory,
(c) decides who perceives it (the model names agents in [brackets]; any agent name found in the
    answer counts; when it names none, nobody reacts — the authors' "[]" case),
(d) writes a critique of the social norms it breaks and the harm it may cause.
Every perceiving agent then reacts once; the incident and the reaction enter that agent's memory
and the reaction the modulator's. A memory longer than ``memory_limit`` is summarized by the model
into one item (authors: 3).

All model calls go through one ``Calls`` object: each stage of every scene simulated together is
one ``generate`` batch, seeded by (seed, step, call kind, attempt), and every call is recorded
(kind, step, seed, prompt, output) in its scene's transcript, in call order.

Prompts are files in ``prompts/matrix/``, our own shorter wording: ``plausible`` is adapted from
the authors' ``incident_filter_no_json``, ``perceive`` from ``msg2incident``, ``critique`` from
``unaligned_filter`` / ``unaligned_filter_consequence``, ``react`` from ``character_reaction``,
``summarize`` from ``memory_summary``, ``traits`` / ``status`` / ``goal`` from ``trait_prompt`` /
``status_prompt`` / ``question2target``; ``replan`` (the new action on a failed check) is ours.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from fedtune.synth.generation import TextGenerator

PROMPTS = Path(__file__).parent / "prompts" / "matrix"


@cache
def _template(file: str) -> str:
    return (PROMPTS / f"{file}.txt").read_text(encoding="utf-8").strip()


def prompt(file: str, /, **fields) -> str:
    """The prompt file ``prompts/matrix/<file>.txt`` with its ``{placeholders}`` filled."""
    return _template(file).format(**fields)


def keep_parts(text: str, n: int) -> str:
    """The first ``n`` comma-separated parts, then the first ``n`` sentences, of a one-line text
    (the authors keep 4 traits and 3 status parts so profiles stay short)."""
    text = ",".join(text.strip().splitlines()[0].split(",")[:n]) if text.strip() else ""
    return ".".join(text.split(".")[:n]).strip()


@dataclass
class AgentProfile:
    """Who an agent is; ``traits`` and ``status`` are cut to 4 and 3 parts."""

    name: str
    traits: str
    status: str
    goal: str = ""

    def __post_init__(self):
        self.traits, self.status = keep_parts(self.traits, 4), keep_parts(self.status, 3)


@dataclass
class Agent:
    profile: AgentProfile
    memory: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.profile.name


def memory_text(memory: list[str]) -> str:
    return "\n".join(f"- {m}" for m in memory) or "- (nothing yet)"


def find_names(text: str, names: list[str]) -> list[str]:
    """The ``names`` mentioned in ``text`` (case-insensitive, whole words), in ``names``' order."""
    return [n for n in names if re.search(rf"(?<!\w){re.escape(n)}(?!\w)", text, re.IGNORECASE)]


class Modulator:
    """The scene's referee: its memory of what happened, the critiques of the ego's actions, and
    how many plausibility retries and kept-implausible actions there were."""

    def __init__(self, premise: str, ego: Agent, others: list[Agent]):
        self.premise, self.ego, self.others = premise, ego, others
        self.memory: list[str] = []
        self.critiques: list[dict] = []  # {"step", "incident", "critique"}
        self.retries = self.implausible_kept = 0

    def needs_check(self) -> bool:
        """The first incident is accepted unchecked (nothing to contradict yet)."""
        return bool(self.memory)

    def plausibility_prompt(self, action: str) -> str:
        return prompt("plausible", memory=memory_text(self.memory), incident=f"{self.ego.name}: {action}")

    def perception_prompt(self, action: str) -> str:
        names = ", ".join(a.name for a in [self.ego, *self.others])
        return prompt("perceive", names=names, actor=self.ego.name, incident=action)

    def perceivers(self, answer: str) -> list[Agent]:
        """The other agents the answer names (none named: nobody perceives)."""
        named = set(find_names(answer, [a.name for a in self.others]))
        return [a for a in self.others if a.name in named]

    def critique_prompt(self, action: str) -> str:
        return prompt("critique", actor=self.ego.name, premise=self.premise, incident=action)


def plausible(answer: str) -> bool:
    """A Yes/No verdict: Yes when the answer starts with "yes" (anything else is No)."""
    return answer.strip().lower().startswith("yes")


@dataclass
class Scene:
    """One simulation: a premise (the seed question or topic), the ego agent with its plan, the
    other agents and the modulator; ``actions`` are the ones actually taken."""

    premise: str
    ego: Agent
    others: list[Agent]
    plan: list[str]
    modulator: Modulator = field(init=False)
    actions: list[str] = field(default_factory=list)
    reactions: list[dict] = field(default_factory=list)  # {"step", "agent", "reaction"}

    def __post_init__(self):
        self.modulator = Modulator(self.premise, self.ego, self.others)


class Calls:
    """Every model call of a batch of scenes: one ``generate`` per (kind, step, attempt) over all
    scenes that need it, seeded from (seed, step, kind, attempt), recorded in per-scene transcripts."""

    def __init__(self, generator: TextGenerator, seed: int, scenes: int, use_adapter: bool = False):
        self.generator, self.seed, self.use_adapter = generator, seed, use_adapter
        self.transcripts: list[list[dict]] = [[] for _ in range(scenes)]

    def seed_for(self, kind: str, step: int, attempt: int = 0) -> int:
        return zlib.crc32(f"matrix/{self.seed}/{step}/{kind}/{attempt}".encode())

    def ask(self, kind: str, asks: list[tuple[int, str | list[dict]]], step: int = 0, attempt: int = 0) -> list[str]:
        """Outputs for ``asks`` = [(scene index, prompt or conversation)], in order, stripped."""
        if not asks:
            return []
        seed = self.seed_for(kind, step, attempt)
        chats = [p if isinstance(p, list) else [{"role": "user", "content": p}] for _, p in asks]
        outputs = [o.strip() for o in self.generator.generate(chats, use_adapter=self.use_adapter, seed=seed)]
        for (scene, _), chat, out in zip(asks, chats, outputs):
            self.transcripts[scene].append({"kind": kind, "step": step, "attempt": attempt, "seed": seed,
                                            "prompt": chat[-1]["content"], "output": out})
        return outputs


def make_profiles(calls: Calls, egos: list[tuple[int, str, str]], roles: list[tuple[int, str]]
                  ) -> tuple[list[AgentProfile], list[AgentProfile]]:
    """Profiles written by the model: egos = [(scene, role, question)] get traits and a goal (their
    status is "a <role> whose goal is <goal>", as the authors'), roles = [(scene, role)] get
    traits and a status."""
    every = [(s, r) for s, r, _ in egos] + roles
    traits = calls.ask("traits", [(s, prompt("traits", role=r)) for s, r in every])
    goals = calls.ask("goal", [(s, prompt("goal", question=q)) for s, _, q in egos])
    status = calls.ask("status", [(s, prompt("status", role=r)) for s, r in roles])
    ego_profiles = [AgentProfile(r, t, f"a {r} whose goal is {keep_parts(g, 3)}", g)
                    for (_, r, _), t, g in zip(egos, traits, goals)]
    other_profiles = [AgentProfile(r, t, st) for (_, r), t, st in zip(roles, traits[len(egos):], status)]
    return ego_profiles, other_profiles


class Simulator:
    """Plays scenes step by step, all scenes together (one batch per stage)."""

    def __init__(self, calls: Calls, max_retries: int = 5, memory_limit: int = 3):
        if max_retries < 0 or memory_limit < 1:
            raise ValueError("simulation: max_retries must be >= 0 and memory_limit >= 1")
        self.calls, self.max_retries, self.memory_limit = calls, max_retries, memory_limit

    def run(self, scenes: list[Scene]) -> list[Scene]:
        """Every scene runs its whole plan; scene i records into transcript i."""
        for step in range(max((len(s.plan) for s in scenes), default=0)):
            active = [(i, s) for i, s in enumerate(scenes) if step < len(s.plan)]
            self._step(step, active)
        return scenes

    def _step(self, step: int, active: list[tuple[int, Scene]]) -> None:
        # (a) the ego's next action, checked for plausibility (retried with a new action)
        actions = self._checked_actions(step, active)
        for (_, scene), action in zip(active, actions):
            scene.actions.append(action)
            scene.ego.memory.append(action)
            scene.modulator.memory.append(f"{scene.ego.name}: {action}")
        # (c) who perceives it, (d) its critique
        seen = self.calls.ask("perceive", [(i, s.modulator.perception_prompt(a)) for (i, s), a in zip(active, actions)],
                              step)
        critiques = self.calls.ask("critique", [(i, s.modulator.critique_prompt(a))
                                                for (i, s), a in zip(active, actions)], step)
        for (_, scene), action, critique in zip(active, actions, critiques):
            scene.modulator.critiques.append({"step": step, "incident": action, "critique": critique})
        # every perceiving agent reacts once
        reactors = [(i, s, agent, a) for (i, s), a, answer in zip(active, actions, seen)
                    for agent in s.modulator.perceivers(answer)]
        reactions = self.calls.ask("react", [(i, self._reaction_prompt(agent, s, a)) for i, s, agent, a in reactors],
                                   step)
        for (_, scene, agent, action), reaction in zip(reactors, reactions):
            agent.memory += [f"{scene.ego.name}: {action}", reaction]
            scene.modulator.memory.append(reaction)
            scene.reactions.append({"step": step, "agent": agent.name, "reaction": reaction})
        self._summarize(step, active)

    def _checked_actions(self, step: int, active: list[tuple[int, Scene]]) -> list[str]:
        """The plan's action per scene, replaced by a new one (at most ``max_retries`` times) while
        the modulator finds it implausible; the last one is kept if none passes (counted)."""
        actions = [s.plan[step] for _, s in active]
        pending = [k for k, (_, s) in enumerate(active) if s.modulator.needs_check()]
        for attempt in range(self.max_retries + 1):
            verdicts = self.calls.ask("plausible", [(active[k][0], active[k][1].modulator.plausibility_prompt(actions[k]))
                                                    for k in pending], step, attempt)
            pending = [k for k, v in zip(pending, verdicts) if not plausible(v)]
            if not pending:
                break
            if attempt == self.max_retries:
                for k in pending:
                    active[k][1].modulator.implausible_kept += 1
                break
            new = self.calls.ask("replan", [(active[k][0], self._replan_prompt(active[k][1], actions[k]))
                                            for k in pending], step, attempt)
            for k, action in zip(pending, new):
                active[k][1].modulator.retries += 1
                actions[k] = action or actions[k]
        return actions

    @staticmethod
    def _replan_prompt(scene: Scene, action: str) -> str:
        p = scene.ego.profile
        return prompt("replan", name=p.name, status=p.status, goal=p.goal, memory=memory_text(scene.ego.memory),
                      action=action)

    @staticmethod
    def _reaction_prompt(agent: Agent, scene: Scene, action: str) -> str:
        p = agent.profile
        return prompt("react", name=p.name, traits=p.traits, status=p.status, memory=memory_text(agent.memory),
                      incident=f"{scene.ego.name}: {action}")

    def _summarize(self, step: int, active: list[tuple[int, Scene]]) -> None:
        """Each memory (agents' and modulator's) longer than ``memory_limit`` becomes one summary."""
        memories = [(i, m) for i, s in active for m in [s.modulator.memory, s.ego.memory, *(a.memory for a in s.others)]
                    if len(m) > self.memory_limit]
        summaries = self.calls.ask("summarize", [(i, prompt("summarize", events=memory_text(m))) for i, m in memories],
                                   step)
        for (_, memory), summary in zip(memories, summaries):
            memory[:] = [summary]
