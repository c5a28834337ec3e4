"""FedGC: each client adds generated data to its private data before federated training (Ye, Zhu,
Chai, Chen, Wang 2023, "Federated Learning Empowered by Generative Content", arXiv 2312.05807).

One generation step before round 0, then any FL algorithm unchanged. The paper's three design
axes plus its training strategy are the keys:
- ``budget`` M samples in total, split by ``allocation``: ``equal`` (M/N per client, the choice the
  paper's findings favour), ``inverse_size`` (∝ 1/|D_c|: more for small clients) or ``balance``
  (water-filling over the (client, category) cells: each sample goes to the client's currently
  smallest category, so under-represented categories fill up first);
- ``prompts``: ``single`` (one fixed task template), ``multiple`` (several hand-written templates in
  turn) or ``generated`` (the generator first writes diverse topics, then each prompt asks for
  one of them);
- ``guidance``: ``prompt`` (the task prompt only), ``data`` (a few private examples only) or
  ``dual`` (task prompt + private examples: the paper's proposal);
- ``mix: merged``: generated and private data trained on together from the start (the paper's
  default strategy; the only one offered).
No code of the authors was found (the paper's experiments are images and text classification):
the templates, the topic-generation prompt and the balance rule are our reading for instruction
data (UNVERIFIED). The generated share of each client's data is in the report.
"""

from __future__ import annotations

import random
import zlib
from typing import Literal

from pydantic import Field

from fedtune.schema import Section
from fedtune.synth.generation import GENERATORS, TextGenerator
from fedtune.synth.registry import SYNTHESIZERS, Synthesis
from fedtune.synth.u2s import parse

TEMPLATES = [  # ``multiple``: the first one is ``single``
    "Write one new instruction about {task}, then its correct response.",
    "Invent a question a user could ask about {task}, and answer it.",
    "Give one more example task on {task}: an instruction and the response to it.",
    "Create a short exercise about {task} together with its solution.",
]
FORMAT = "\nAnswer in this format:\n### Instruction:\n<instruction>\n### Response:\n<response>"
TOPICS = "List {n} different specific topics within {task}, one per line, without numbering."


class FedGCParams(Section):
    """Generated content added to each client's data before training."""

    budget: int = Field(64, ge=1)  # M: generated samples over all clients
    allocation: Literal["equal", "inverse_size", "balance"] = "equal"
    prompts: Literal["single", "multiple", "generated"] = "multiple"
    guidance: Literal["prompt", "data", "dual"] = "dual"
    mix: Literal["merged"] = "merged"
    task: str = "the tasks in this dataset"  # what the data is about, in the prompts
    shots: int = Field(3, ge=1)  # private examples shown with data or dual guidance
    topics: int = Field(8, ge=1)  # prompts: generated — topics written first
    generation: GENERATORS.choice(default="local") = {"backend": "local", "max_new_tokens": 96, "temperature": 0.7}
    seed: int = 0


def allocate(sizes: list[int], budget: int, allocation: str) -> list[int]:
    """Samples per client: largest-remainder rounding of the allocation's shares of ``budget``
    (``balance`` is per category, see ``balance_targets``; per client it is ``equal``)."""
    weights = [1.0 / max(n, 1) for n in sizes] if allocation == "inverse_size" else [1.0] * len(sizes)
    raw = [budget * w / sum(weights) for w in weights]
    counts = [int(x) for x in raw]
    for i in sorted(range(len(raw)), key=lambda i: (counts[i] - raw[i], i))[: budget - sum(counts)]:
        counts[i] += 1
    return counts


def balance_targets(category_counts: dict[str, int], extra: int) -> dict[str, int]:
    """Water-filling: ``extra`` samples, each to the currently smallest category (ties by name)."""
    counts, added = dict(category_counts), {c: 0 for c in category_counts}
    for _ in range(extra):
        smallest = min(counts, key=lambda c: (counts[c], c))
        counts[smallest] += 1
        added[smallest] += 1
    return {c: n for c, n in added.items() if n}


def _example(record: dict) -> str:
    user = next(m["content"] for m in record["messages"] if m["role"] == "user")
    answer = next(m["content"] for m in reversed(record["messages"]) if m["role"] == "assistant")
    return f"### Instruction:\n{user}\n### Response:\n{answer}\n"


@SYNTHESIZERS.register("fedgc", FedGCParams)
class FedGC(Synthesis):
    """FedGC: each client generates data (budget, prompts, guidance) and trains on it merged with its own."""

    def __init__(self, params: FedGCParams, generator: TextGenerator, model=None, tokenizer=None, num_clients: int = 1):
        self.params, self.generator, self.num_clients = params, generator, num_clients
        self._topics: list[str] | None = None

    def topics(self) -> list[str]:
        """``prompts: generated``: diverse topics the generator writes once (seeded, cached)."""
        if self._topics is None:
            ask = TOPICS.format(n=self.params.topics, task=self.params.task)
            text = self.generator.generate([[{"role": "user", "content": ask}]], use_adapter=False,
                                           seed=self.params.seed)[0]
            self._topics = [t.strip(" -*•\t") for t in text.splitlines() if t.strip(" -*•\t")] or [self.params.task]
        return self._topics

    def count_for(self, client: str, sizes: dict[str, int] | None) -> int:
        """This client's share of the budget; without every client's size (a node's own data
        file) only ``equal`` can be computed: budget / federation.num_clients."""
        if sizes is None:
            if self.params.allocation == "inverse_size":
                raise ValueError("synth.allocation: inverse_size needs every client's size; a node with its own "
                                 "data file knows only its own (use equal or balance)")
            return allocate([1] * self.num_clients, self.params.budget, "equal")[0]
        names = sorted(sizes)
        return allocate([sizes[n] for n in names], self.params.budget, self.params.allocation)[names.index(client)]

    def _prompt(self, i: int, rng: random.Random, private: list[dict], category: str | None) -> str:
        p = self.params
        task = p.task if category is None else f"{p.task} (the kind: {category})"
        if p.prompts == "generated":
            topics = self.topics()
            task = f"{task}, on the topic: {topics[i % len(topics)]}"
        template = TEMPLATES[0] if p.prompts == "single" else TEMPLATES[i % len(TEMPLATES)]
        shown = rng.sample(private, min(p.shots, len(private))) if private and p.guidance != "prompt" else []
        examples = "Examples:\n" + "\n".join(_example(r) for r in shown) + "\n" if shown else ""
        if p.guidance == "data":
            return examples + "Write one more example like these." + FORMAT
        return examples + template.format(task=task) + FORMAT

    def _generate(self, prompts: list[str], client: str) -> list[str]:
        """One output per prompt; each client, and each repetition of a prompt within it, samples
        with its own seed (so identical prompts give distinct samples, and the cache keeps them apart)."""
        repetition, seen = [], {}
        for q in prompts:
            repetition.append(seen.get(q, 0))
            seen[q] = repetition[-1] + 1
        outputs = [""] * len(prompts)
        for r in sorted(set(repetition)):
            idx = [i for i, k in enumerate(repetition) if k == r]
            seed = zlib.crc32(f"fedgc/{self.params.seed}/{client}/{r}".encode())
            for i, text in zip(idx, self.generator.generate([[{"role": "user", "content": prompts[i]}] for i in idx],
                                                             use_adapter=False, seed=seed)):
                outputs[i] = text
        return outputs

    def synthesize(self, records: list[dict], client: str, sizes=None) -> tuple[list[dict], list[dict]]:
        """``records`` plus this client's generated pairs (unparseable or empty ones dropped, counted)."""
        p = self.params
        n = self.count_for(client, sizes)
        rng = random.Random(f"fedgc/{p.seed}/{client}")
        pairs = [r for r in records if "messages" in r]
        if p.allocation == "balance":  # which category each generated sample is for
            cats: dict[str, int] = {}
            for r in pairs:
                cats[r.get("category", "default")] = cats.get(r.get("category", "default"), 0) + 1
            plan = [c for c, k in balance_targets(cats or {"default": 0}, n).items() for _ in range(k)]
        else:
            plan = [None] * n
        by_category = {}
        for r in pairs:
            by_category.setdefault(r.get("category", "default"), []).append(r)
        prompts = [self._prompt(i, rng, by_category.get(c, pairs) if c else pairs, c) for i, c in enumerate(plan)]
        outputs = self._generate(prompts, client)
        made, unparseable = [], 0
        for i, out in enumerate(outputs):
            pair = parse(out if "### Response" in out else "")
            if pair is None or not pair[0] or not pair[1]:
                unparseable += 1
                continue
            made.append({"messages": [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}],
                         "category": plan[i] or "generated",
                         "synth": {"method": "fedgc", "prompt": prompts[i], "generated": out}})
        report = [{"client": client, "step": "synth.fedgc", "generated": len(outputs), "kept": len(made),
                   "dropped": unparseable, "private": len(records),
                   "generated_share": len(made) / max(len(made) + len(records), 1)}]
        if unparseable:
            report.append({"client": client, "step": "synth.fedgc.unparseable", "dropped": unparseable})
        return records + made, report
