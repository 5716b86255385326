"""Policies by name: the built-ins, or any class in the user's own code as `package.module:ClassName`."""

from __future__ import annotations

import dataclasses
import importlib
import inspect

from policies.base import Policy

BUILTIN = {
    "random": "policies.base:RandomPolicy",
    "pop": "policies.base:PopularityPolicy",
    "bpr": "policies.bpr:BPRPolicy",
    "gru4rec": "policies.gru4rec:GRU4RecPolicy",
    "sasrec": "policies.sasrec:SASRecPolicy",
    "co-liked": "policies.evidence:CoLikedPolicy",
    "llmrank": "policies.llmrank:LLMRankPolicy",
    "starec": "policies.starec:STARecPolicy",
    "agentcf": "policies.agentcf:AgentCFPolicy",
}


def policy_class(spec: str) -> type:
    """Resolve a built-in name or an import path `module:Class` (lazily, so LLM policies cost nothing unused)."""
    path = BUILTIN.get(spec, spec)
    module_name, _, attribute = path.partition(":")
    if not attribute:
        raise ValueError(f"unknown policy {spec!r}: use one of {sorted(BUILTIN)} or 'package.module:ClassName'")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"cannot load policy {spec!r}: {error}") from error


def make_policy(spec: str, seed: int = 0, **options) -> Policy:
    """Instantiate a policy; `seed` and the options are passed when its constructor takes them."""
    cls = policy_class(spec)
    accepted = _accepted_options(cls)
    kwargs = {k: v for k, v in {"seed": seed, **options}.items() if accepted is None or k in accepted}
    policy = cls(**kwargs)
    if not callable(getattr(policy, "score", None)):
        raise TypeError(f"policy {spec!r} has no score(cases) method")
    return policy


def check_options(specs: list[str] | tuple[str, ...], options: dict) -> None:
    """Every option must be taken by at least one of the run's policies: a misspelt one fails before hours of work."""
    taken: set[str] = set()
    for spec in specs:
        accepted = _accepted_options(policy_class(spec))
        if accepted is None:
            return
        taken |= accepted
    unknown = sorted(set(options) - taken)
    if unknown:
        raise ValueError(f"option(s) {unknown} are taken by none of the policies {list(specs)}; "
                         f"they take: {sorted(taken - {'seed'})}")


def _accepted_options(cls: type) -> set[str] | None:
    """Constructor parameters, following `**options` up the class hierarchy (into a training config's fields, where
    `**overrides` end in one); None if anything is accepted."""
    names: set[str] = set()
    for klass in cls.__mro__[:-1]:  # object's own __init__ takes nothing
        if "__init__" not in klass.__dict__:
            continue
        parameters = inspect.signature(klass.__dict__["__init__"]).parameters.values()
        names |= {p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)} - {"self"}
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            return names
        defaults = getattr(klass, "defaults", None)
        if dataclasses.is_dataclass(defaults):
            return names | {field.name for field in dataclasses.fields(defaults)}
    return None if names or cls.__init__ is not object.__init__ else names


def policy_name(policy, spec: str) -> str:
    return getattr(policy, "name", None) or spec.rpartition(":")[2]

