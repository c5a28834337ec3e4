"""The base of every config section, the config error, and the tagged-registry union.

Every package owns the pydantic sections of its own components (an algorithm its parameters, a
data op its thresholds); ``fedtune.config`` assembles them into one ``RunConfig``. Components of
one kind are chosen by name from a :class:`Registry` — ``algorithm: {name: fedprox, mu: 0.01}``,
``model.adapter: {method: lora, r: 16}``, ``data.pipeline: [{op: length, max: 2000}]`` — and each
validates its own keys, the way PEFT's ``register_peft_method`` ties a method to its config class.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    create_model,
)
from pydantic_core import PydanticCustomError


class ConfigError(ValueError):
    """A config problem, already phrased as one line for the user."""


class Section(BaseModel):
    """A config section: unknown keys are errors; assignments and defaults are validated (so a
    default written as a component's name, ``"lora"``, becomes its parameter model)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True)


@dataclass(frozen=True)
class Entry:
    """One registered component: its name, one-line description, parameter model and the object
    itself (a class or a function)."""

    name: str
    description: str
    params: type[Section]
    target: Any


TAGS: set[str] = set()  # the keys that name a component in YAML ("name", "method", "op")
REGISTRIES: dict[str, "Registry"] = {}  # kind -> registry, for the catalog (`fedtune ls`)


class Registry:
    """Name -> component, for one kind of component (``tag`` is the key that names it in YAML).

    ``register(name, params)`` decorates the component; its parameter model gets the tag field
    added (``name: Literal["fedprox"]``), so a validated config names its own component and
    dumps back to the YAML a user writes. ``choice()`` is the config field type for one choice.
    """

    def __init__(self, kind: str, tag: str = "name"):
        self.kind, self.tag = kind, tag
        self.entries: dict[str, Entry] = {}
        TAGS.add(tag)
        REGISTRIES[kind] = self

    def register(self, name: str, params: type[Section] | None = None, description: str | None = None
                 ) -> Callable[[Any], Any]:
        def decorate(target):
            if name in self.entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            base = params or Section
            module = getattr(target, "__module__", None) or base.__module__
            tagged = create_model(f"{_camel(name)}{_camel(self.kind)}Config", __base__=base, __module__=module,
                                  __doc__=base.__doc__, **{self.tag: (Literal[name], name)})
            # a module attribute, so a config pickles (the resident trainer's local socket)
            setattr(sys.modules[module], tagged.__name__, tagged)
            doc = description or (target.__doc__ or base.__doc__ or "").strip().splitlines()[0]
            self.entries[name] = Entry(name, doc, tagged, target)
            return target

        return decorate

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def __getitem__(self, name: str) -> Entry:
        if name not in self.entries:
            raise ConfigError(f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}")
        return self.entries[name]

    def names(self) -> list[str]:
        return list(self.entries)

    def config(self, name: str, **params) -> Section:
        """A validated parameter model for entry ``name`` (defaults for missing keys)."""
        return self[name].params(**params)

    def choice(self, default: str | None = None, optional: bool = False):
        """The annotated type of one choice of this kind, validated by the entry it names at
        validation time (so an entry registered by a user's module works too). Accepts the short
        form ``"fedprox"`` for ``{name: fedprox}``; a mapping without the tag means ``default``;
        with ``optional``, None means no component."""
        return Annotated[Section | None if optional else Section,
                         PlainValidator(lambda value: self._validate(value, default, optional)),
                         PlainSerializer(lambda v: None if v is None else v.model_dump(mode="json")), self]

    def _validate(self, value, default, optional=False):
        if value is None and optional:
            return None
        if isinstance(value, Section) and any(isinstance(value, e.params) for e in self.entries.values()):
            return value
        if isinstance(value, str):
            value = {self.tag: value}
        if not isinstance(value, dict):
            raise _choice_error("", f"expected a {self.kind} name or a mapping with '{self.tag}' (got {value!r})")
        name = value.get(self.tag, default)
        if name not in self.entries:
            raise _choice_error(self.tag, f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}")
        params = self.entries[name].params
        try:
            return params.model_validate({**value, self.tag: name})
        except ValidationError as e:
            err = e.errors()[0]
            sub = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                valid = ", ".join(k for k in params.model_fields if k != self.tag) or "none"
                raise _choice_error(sub, f"unknown key for {self.kind} {name} (its keys: {valid})", "unknown") from None
            raise _choice_error(sub, f"{err['msg']} (got {err.get('input')!r})") from None


CHOICE_ERROR = "fedtune_choice"


def _choice_error(sub: str, text: str, kind: str = "value") -> PydanticCustomError:
    """An error that ``fedtune.config`` prints as one line naming the full key (``sub`` is the
    part of the key below the choice, e.g. ``mu`` in ``algorithm.mu``)."""
    return PydanticCustomError(CHOICE_ERROR, "{text}", {"sub": sub, "text": text, "kind": kind})


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_"))


def _yaml_switch(value):
    """YAML reads a bare ``off``/``on`` as a boolean: take it back as the word the user wrote."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return value


# An auto/on/off switch, as written in YAML (``bf16: off``) or on the command line.
AutoSwitch = Annotated[Literal["auto", "on", "off"], BeforeValidator(_yaml_switch)]
