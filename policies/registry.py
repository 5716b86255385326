"""Policies by name: the built-ins, or any class in the user's own code as `module:Class` (importable, or a module
in the working directory, as `python -m` would find it) or `path/to/file.py:Class`."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path

from starec_env.policies.base import Policy

BUILTIN = {
    "random": "starec_env.policies.base:RandomPolicy",
    "pop": "starec_env.policies.base:PopularityPolicy",
    "bpr": "starec_env.policies.bpr:BPRPolicy",
    "gru4rec": "starec_env.policies.gru4rec:GRU4RecPolicy",
    "sasrec": "starec_env.policies.sasrec:SASRecPolicy",
    "co-liked": "starec_env.policies.evidence:CoLikedPolicy",
    "fused": "starec_env.policies.fusion:FusedPolicy",
    "llmrank": "starec_env.policies.llmrank:LLMRankPolicy",
    "starec": "starec_env.policies.starec:STARecPolicy",
    "agentcf": "starec_env.policies.agentcf:AgentCFPolicy",
}


def policy_class(spec: str) -> type:
    """Resolve a built-in name or `module:Class` / `file.py:Class` (lazily, so LLM policies cost nothing unused)."""
    path = BUILTIN.get(spec, spec)
    module_name, _, attribute = path.rpartition(":")
    if not module_name or not attribute:
        raise ValueError(f"unknown policy {spec!r}: use one of {sorted(BUILTIN)}, 'module:Class' or "
                         "'path/to/file.py:Class'")
    try:
        return getattr(_import(module_name), attribute)
    except (ImportError, AttributeError, OSError) as error:
        raise ValueError(f"cannot load policy {spec!r}: {error}") from error


def _import(module_name: str):
    """A module by import name (the working directory searched last) or by file path."""
    if module_name.endswith(".py"):
        file = Path(module_name).resolve()
        if not file.is_file():
            raise ImportError(f"no such file {module_name}")
        name = f"starec_user_policies.{file.stem}"  # never shadows an installed module of the same name
        spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # a console script does not search it, `python -m` does
    return importlib.import_module(module_name)


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
    """Constructor parameters up the class hierarchy, following `**options` into each parent and into a config
    dataclass the class names as `defaults` (the fields `**overrides` end in); None if anything is accepted."""
    names: set[str] = set()
    bounded = True  # False once `**options` lead nowhere visible: then anything may be accepted
    for klass in cls.__mro__[:-1]:  # object's own __init__ takes nothing
        if "__init__" not in klass.__dict__:
            continue
        parameters = inspect.signature(klass.__dict__["__init__"]).parameters.values()
        names |= {p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)} - {"self"}
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            return names
        defaults = getattr(klass, "defaults", None)
        bounded = dataclasses.is_dataclass(defaults)
        if bounded:
            names |= {field.name for field in dataclasses.fields(defaults)}
    return names if bounded else None


def policy_name(policy, spec: str) -> str:
    return getattr(policy, "name", None) or spec.rpartition(":")[2]

