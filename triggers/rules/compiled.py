"""Pre-validated rules: what `triggers compile` writes next to the rules, and a starting function
instance loads instead of validating the rules again.

    config/rules.yaml                  the rules (a file, or a directory of *.yaml / *.yml)
    config/rules.yaml.compiled.json    `triggers compile config/rules.yaml` writes this

Validating rules (ruamel.yaml, the pydantic schema, the pattern checker, CEL type-checking,
Jinja parsing) is most of what a cold start of the function spends on its own, and the answer
never changes for the same sources. The artifact holds the validated rules as JSON, each as the
values a Rule is built from (the spec and the patterns as JSON text, the run options, template
sources); loading it builds the same RuleSet with the standard library's json alone, no pydantic
object, and compiles each template and `when:` condition on its first use rather than all of
them at start.

The artifact is used only while it provably describes what validation saw; otherwise the rules
are validated as if it did not exist (and the log says why):

- the same format and the same *compiler*: a sha256 of the triggers modules that decide what
  loading produces (triggers/rules/*.py, events/model.py, flow/spec.py and flow/naming.py)
  and of the pydantic and Jinja versions, so upgrading triggers or editing the schema retires
  every artifact;
- the same sources: the same rules files (paths below a directory) with the same sha256;
- the same values of every environment variable the sources reference (`${NAME}`), since
  they are substituted when loading: unset then means unset now.

Only `App` (the function) reads the artifact; `triggers validate` and the other commands always
validate.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..plan import SecretRef
from ._flow_json import flow_document, flow_from_document
from ._intern import Interner
from ._sources import no_cyclic_gc, rules_files
from ._spec_text import dump_spec
from .condition import deferred_condition
from .patterns import compile_text
from .rule import Location, Rule, RunOptions
from .ruleset import RuleSet
from .templates import Template, deferred_template

# 2: each rule as the values it is built from (spec and patterns as JSON text), no pydantic.
FORMAT = 2
SUFFIX = ".compiled.json"


class CompileError(ValueError):
    """Valid rules that cannot be written as an artifact (a value JSON cannot carry)."""


def artifact_path(rules: str | os.PathLike[str]) -> Path:
    """Where the artifact of a rules file or directory lives: `<rules>.compiled.json`."""
    return Path(f"{Path(rules)}{SUFFIX}")


# -- what the artifact depends on -------------------------------------------------------------

_compiler: str | None = None


def compiler_fingerprint() -> str:
    """sha256 of the sources of the modules whose code decides what loading rules produces, and
    of the versions of the libraries that check and later compile them (pydantic, read without
    importing it; Jinja, which functions-framework's Flask has imported by then; the CEL runtime
    is not imported at start, and is left out)."""
    global _compiler
    if _compiler is None:
        import jinja2

        rules_dir = Path(__file__).resolve().parent
        package = rules_dir.parent
        files = sorted(rules_dir.glob("*.py")) + [
            package / "__init__.py",
            package / "events" / "model.py",
            # a rule's flow is stored compiled: its values and default queue ids come from here
            package / "flow" / "spec.py",
            package / "flow" / "naming.py",
        ]
        digest = hashlib.sha256(
            f"triggers rules artifact {FORMAT}\0pydantic {_pydantic_version()}\0"
            f"jinja2 {jinja2.__version__}\0".encode()
        )
        for file in files:
            digest.update(file.relative_to(package).as_posix().encode() + b"\0")
            digest.update(file.read_bytes() + b"\0")
        _compiler = digest.hexdigest()
    return _compiler


def _pydantic_version() -> str:
    """pydantic's version without importing pydantic, which a start from compiled rules
    otherwise never needs (docs/performance.md): the VERSION line of its version.py, found as
    import would find it."""
    from importlib.util import find_spec

    spec = find_spec("pydantic")
    if spec is None or spec.origin is None:
        return "absent"
    text = Path(spec.origin).with_name("version.py").read_text(encoding="utf-8")
    line = next((x for x in text.splitlines() if x.startswith("VERSION = ")), None)
    if line is None:  # a layout we do not know: its whole text still changes with the version
        return hashlib.sha256(text.encode()).hexdigest()
    return line.partition("=")[2].strip().strip("'\"")


def _source_name(root: Path, file: Path) -> str:
    # A single file is known by the artifact's own name (so renaming both keeps them paired).
    return "." if file == root else file.relative_to(root).as_posix()


def env_references(text: str) -> set[str]:
    """Every `${NAME}` / `${NAME:-default}` in the text (`$${` is a literal, not a reference)."""
    from .yamlsource import _REFERENCE

    return {m.group(1) for part in text.split("$${") for m in _REFERENCE.finditer(part)}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- writing ------------------------------------------------------------------------------------


def compile_rules(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> tuple[Path, RuleSet]:
    """Validate the rules (raising RulesError as `load` does) and write their artifact.

    `environ` must be the environment the function will run with, for the `${NAME}`
    references the rules make (the artifact is only used while their values are the same).
    """
    from .loader import load_source

    root = Path(path)
    environ = os.environ if environ is None else environ
    sources: dict[Path, bytes] = {}
    with no_cyclic_gc():
        ruleset = load_source(root, environ, sources)
    return write(root, build(root, ruleset, sources, environ)), ruleset


def build(
    root: Path, ruleset: RuleSet, sources: Mapping[Path, bytes], environ: Mapping[str, str]
) -> dict[str, Any]:
    """The artifact document of `ruleset`, loaded from `root`, whose files held `sources`."""
    files = [Path(f) for f in ruleset.files]
    names: set[str] = set()
    for file in files:
        names |= env_references(sources[file].decode("utf-8"))
    rules = [_entry(root, rule) for rule in ruleset.rules]
    document = {
        "format": FORMAT,
        "compiler": compiler_fingerprint(),
        "kind": "directory" if root.is_dir() else "file",
        "sources": [[_source_name(root, f), _sha256(sources[f])] for f in files],
        "environ": {name: environ.get(name) for name in sorted(names)},
        "rules": rules,
    }
    try:
        text = json.dumps(document, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CompileError(f"the rules hold a value JSON cannot represent: {exc}") from None
    if json.loads(text) != document:
        # e.g. a pattern with a non-string key somewhere JSON would turn into a string
        raise CompileError("the rules hold values that JSON would change (non-string keys?)")
    return document


def _entry(root: Path, rule: Rule) -> dict[str, Any]:
    """One rule in the artifact: what `_rule` builds it from without pydantic or validation."""
    source = rule.spec_source
    spec_text = source if isinstance(source, str) else dump_spec(source)
    if spec_text is None:
        raise CompileError(f"rule {rule.name!r} holds a value JSON cannot represent exactly")
    options = rule.options
    return {
        "name": rule.name,
        "file": _source_name(root, Path(rule.location.file)),
        "line": rule.location.line,
        "job": rule.job,
        "types": sorted(rule.types),
        "spec": spec_text,
        "options": [
            options.enabled,
            options.system,
            options.container,
            options.clear_args,
            options.task_count,
            options.timeout_seconds,
            [[name, ref.secret, ref.version] for name, ref in options.secret_env],
            options.dedup_window_seconds,
        ],
        "scope": None if rule.scope is None else rule.scope.text,
        "match": None if rule.pattern is None else rule.pattern.text,
        "when": None if rule.condition is None else rule.condition.source,
        "args": None if rule.args is None else [t.source for t in rule.args],
        "env": [[name, t.source] for name, t in rule.env],
        "dedup_key": None if rule.dedup_key is None else rule.dedup_key.source,
        "batch_key": None if rule.batch_key is None else rule.batch_key.source,
        "schedule": (
            None if rule.schedule is None else [rule.schedule.cron, rule.schedule.time_zone]
        ),
        "template_lines": dict(rule.template_lines),
        # Merged with the file's `limits:` defaults, which the spec alone does not hold.
        "flow": flow_document(rule.flow),
    }


def write(root: Path, document: Mapping[str, Any]) -> Path:
    """Write the artifact next to the rules (atomically: a reader sees the old or the new)."""
    target = artifact_path(root)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(document, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(temporary, target)
    return target


# -- reading ------------------------------------------------------------------------------------


def read(root: Path, environ: Mapping[str, str]) -> tuple[RuleSet | None, str | None]:
    """(rules, None) from a fresh artifact; (None, why) when there is one but it cannot be used;
    (None, None) when there is none."""
    target = artifact_path(root)
    try:
        raw = target.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read {target}: {exc}"
    try:
        document = json.loads(raw)
        reason = _stale(root, document, environ)
        if reason is not None:
            return None, f"{target} is out of date: {reason}"
        files = rules_files(root) or []
        by_name = {_source_name(root, f): str(f) for f in files}
        intern = Interner()
        rules = [_rule(entry, by_name, intern) for entry in document["rules"]]
    except Exception as exc:  # a damaged or hand-edited artifact: validate the sources instead
        return None, f"{target} cannot be used: {type(exc).__name__}: {exc}"
    return RuleSet(rules, files=tuple(str(f) for f in files)), None


def _stale(root: Path, document: Mapping[str, Any], environ: Mapping[str, str]) -> str | None:
    if document.get("format") != FORMAT or document.get("compiler") != compiler_fingerprint():
        return "it was compiled by another version of triggers"
    files = rules_files(root)
    if files is None:
        return f"{root} does not exist"
    if document.get("kind") != ("directory" if root.is_dir() else "file"):
        return f"{root} is no longer a {document.get('kind')}"
    recorded = {name: digest for name, digest in document["sources"]}
    current = {_source_name(root, f): f for f in files}
    if set(recorded) != set(current):
        changed = sorted(set(recorded) ^ set(current))
        return f"the rules files differ ({', '.join(changed)})"
    for name, file in current.items():
        if _sha256(file.read_bytes()) != recorded[name]:
            return f"{file} changed"
    for name, value in document["environ"].items():
        if environ.get(name) != value:
            return f"the environment variable {name} changed"
    return None


def _rule(entry: Mapping[str, Any], files: Mapping[str, str], intern: Interner) -> Rule:
    # Hot with 50,000 rules: shared values are looked up in the load's tables directly.
    templates = intern.templates
    options_key = entry["options"]
    options_key[6] = tuple(map(tuple, options_key[6]))  # secret env: [[name, secret, version]]
    key = tuple(options_key)
    options = intern.options.get(key)
    if options is None:
        enabled, system, container, clear_args, tasks, timeout, secrets, window = key
        options = intern.options[key] = RunOptions(
            enabled=enabled,
            system=system,
            container=container,
            clear_args=clear_args,
            task_count=tasks,
            timeout_seconds=timeout,
            secret_env=tuple((name, SecretRef(s, v)) for name, s, v in secrets),
            dedup_window_seconds=window,
        )
    args, env, schedule = entry["args"], entry["env"], entry["schedule"]
    scope, match, when = entry["scope"], entry["match"], entry["when"]
    dedup_key, batch_key = entry["dedup_key"], entry["batch_key"]
    if args is not None:
        args = intern(tuple([templates.get(s) or _template(s, templates) for s in args]))
    return Rule(
        name=entry["name"],
        spec_source=entry["spec"],
        options=options,
        types=intern(frozenset(entry["types"])),
        job=intern(entry["job"]),
        location=Location(files[entry["file"]], entry["line"]),
        scope=None if scope is None else compile_text(scope, intern),
        pattern=None if match is None else compile_text(match, intern),
        condition=None if when is None else deferred_condition(when),
        args=args,
        env=intern(tuple([(n, templates.get(s) or _template(s, templates)) for n, s in env])),
        dedup_key=None if dedup_key is None else _template(dedup_key, templates),
        schedule=None if schedule is None else _DeferredSchedule(*schedule),
        template_lines=entry["template_lines"],
        flow=None if entry["flow"] is None else flow_from_document(entry["flow"]),
        batch_key=None if batch_key is None else _template(batch_key, templates),
    )


def _template(source: str, templates: dict[str, Template]) -> Template:
    # One Template per distinct source: its compiled form, made on first render, is shared.
    template = templates.get(source)
    if template is None:
        template = templates[source] = deferred_template(source)
    return template


class _DeferredSchedule:
    """A rule's `Schedule` (validated when the artifact was compiled), built on first use:
    triggers.rules.schedule loads cronsim, which only rules owning a Scheduler job ever need."""

    __slots__ = ("cron", "time_zone", "_schedule")

    def __init__(self, cron: str, time_zone: str | None) -> None:
        self.cron = cron
        self.time_zone = time_zone
        self._schedule: Any = None

    def __getattr__(self, name: str) -> Any:  # everything but cron and time_zone
        schedule = self._schedule
        if schedule is None:
            from .schedule import Schedule

            schedule = self._schedule = Schedule(self.cron, self.time_zone)
        return getattr(schedule, name)

    def __repr__(self) -> str:
        return f"Schedule(cron={self.cron!r}, time_zone={self.time_zone!r})"
