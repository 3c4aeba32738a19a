"""Load rules files into a RuleSet, or fail with every problem at once as `file:line` messages.

Loading is where all checking happens: schema and Cloud Run limits (pydantic), patterns, CEL
conditions, templates, job names, duplicates. A rules file that loads cannot fail at event time
for a reason that was knowable before.

`triggers.rules.load` is the front door: it reads a fresh pre-validated artifact (compiled.py)
when asked and there is one, and comes here otherwise.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel, ValidationError

from ..errors import PatternError, Problem, RulesError
from ..runners.systems import get as get_system
from ..runners.systems import unsupported
from ._intern import Interner
from ._sources import no_cyclic_gc, rules_files
from ._spec_text import dump_spec
from .condition import ConditionProblem, compile_condition
from .flow import FileLimits, build_flow, check_shared_queues, file_limits
from .patterns import compile as compile_pattern
from .rule import Location, Rule, RunOptions
from .ruleset import RuleSet
from .schema import (
    ENV_VALUE_TAGS,
    FULL_JOB,
    JOB_ID,
    ON_SHORTHANDS,
    PROJECT_ID,
    REGION,
    RuleSpec,
)
from .templates import Template, TemplateProblem, compile_template
from .yamlsource import YAMLProblem, line_of, parse, plain, substitute_env

log = logging.getLogger("triggers.rules")

_TOP_LEVEL = ("project", "region", "limits", "rules")
_RULE_FIELDS = tuple(RuleSpec.model_fields)


def load_source(
    root: Path, environ: Mapping[str, str], sources: dict[Path, bytes] | None = None
) -> RuleSet:
    """Validate and build the rules below `root`; `sources` (if given) receives each file's
    bytes as read."""
    problems: list[Problem] = []
    files = rules_files(root)
    if files is None:
        raise RulesError([Problem(str(root), None, None, "no such file or directory")])
    if not files:
        raise RulesError([Problem(str(root), None, None, "no *.yaml or *.yml rules files")])

    rules: list[Rule] = []
    for file in files:
        try:
            data = file.read_bytes()
            # What read_text(encoding="utf-8") gives, from the bytes an artifact is checked by.
            text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(str(file), None, None, f"cannot read: {exc}"))
            continue
        if sources is not None:
            sources[file] = data
        rules.extend(_FileLoader(str(file), environ, problems).load(text))

    _check_duplicates(rules, problems)
    check_shared_queues(rules, problems)
    if problems:
        problems.sort(key=lambda p: (p.file, p.line or 0))
        raise RulesError(problems)
    return RuleSet(rules, files=tuple(str(f) for f in files))


def load_text(
    text: str, *, name: str = "<rules>", environ: Mapping[str, str] | None = None
) -> RuleSet:
    """Load rules from a string (tests, tools)."""
    problems: list[Problem] = []
    with no_cyclic_gc():
        rules = _FileLoader(name, os.environ if environ is None else environ, problems).load(text)
    _check_duplicates(rules, problems)
    check_shared_queues(rules, problems)
    if problems:
        problems.sort(key=lambda p: p.line or 0)
        raise RulesError(problems)
    return RuleSet(rules, files=(name,))


def _check_duplicates(rules: list[Rule], problems: list[Problem]) -> None:
    seen: dict[str, Rule] = {}
    for rule in rules:
        first = seen.setdefault(rule.name, rule)
        if first is not rule:
            problems.append(
                Problem(
                    rule.location.file,
                    rule.location.line,
                    rule.name,
                    f"duplicate rule name (first defined at {first.location})",
                )
            )


class _FileLoader:
    """Loads one file, appending every problem it finds to a shared list."""

    def __init__(self, file: str, environ: Mapping[str, str], problems: list[Problem]) -> None:
        self.file = file
        self.environ = environ
        self.problems = problems
        self.file_limits: FileLimits | None = None  # the file's `limits:` defaults
        self.intern = Interner()  # values shared by the file's rules (memory per rule)

    def problem(self, line: int | None, message: str, rule: str | None = None) -> None:
        self.problems.append(Problem(self.file, line, rule, message))

    def load(self, text: str) -> list[Rule]:
        try:
            tree = parse(text)
        except YAMLProblem as exc:
            self.problem(exc.line, exc.message)
            return []
        if tree is None:
            self.problem(1, "the file is empty: expected a mapping with 'rules:'")
            return []
        if not isinstance(tree, dict):
            self.problem(1, f"expected a mapping with 'rules:', found a {type(tree).__name__}")
            return []
        substitute_env(tree, self.environ, lambda line, msg: self.problem(line, msg))

        for key in tree:
            if key not in _TOP_LEVEL:
                self.problem(line_of(tree, (key,)), _unknown_field(str(key), _TOP_LEVEL))
        defaults = {}
        for key in ("project", "region"):
            value = tree.get(key)
            if value is not None and not isinstance(value, str):
                self.problem(line_of(tree, (key,)), f"{key}: must be a string")
            elif value is not None:
                defaults[key] = value
        self.file_limits = file_limits(
            plain(tree.get("limits")),
            lambda *path: line_of(tree, path),
            lambda line, message: self.problem(line, message),
        )
        items = tree.get("rules")
        if items is None:
            self.problem(1, "missing 'rules:' (a list of rules)")
            return []
        if not isinstance(items, list):
            self.problem(line_of(tree, ("rules",)), "rules: must be a list of rules")
            return []

        rules = []
        for index, node in enumerate(items):
            rule = self._rule(node, line_of(tree, ("rules", index)), defaults)
            if rule is not None:
                rules.append(rule)
        return rules

    # -- one rule ---------------------------------------------------------------------------

    def _rule(self, node: Any, line: int | None, defaults: dict[str, str]) -> Rule | None:
        if not isinstance(node, dict):
            self.problem(line, "each rule must be a mapping with name, on and job")
            return None
        name = node.get("name") if isinstance(node.get("name"), str) else None
        before = len(self.problems)

        def at(*path: str | int) -> int | None:
            return line_of(node, path, default=line)

        def problem(where: int | None, message: str) -> None:
            self.problem(where, message, name)

        raw = plain(node)
        spec: RuleSpec | None = None
        invalid: list[tuple] = []
        try:
            spec = RuleSpec.model_validate(raw)
        except ValidationError as exc:
            for error in exc.errors():
                loc = tuple(error["loc"])
                if loc[:2] == ("overrides", "env") and len(loc) > 3 and loc[3] in ENV_VALUE_TAGS:
                    loc = loc[:3] + loc[4:]  # the env value's union tag: not a field users wrote
                invalid.append(loc)
                problem(at(*loc), _pydantic_message(loc, error))

        def valid(*path: str, kind: type | tuple[type, ...] = str) -> Any:
            """The raw value at path if the schema accepted it (so deeper checks make sense)."""
            if any(loc[: len(path)] == path or path[: len(loc)] == loc for loc in invalid):
                return None
            value: Any = raw
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            return value if isinstance(value, kind) else None

        # Deeper checks run on every field that passed the schema, so one run reports all.
        job = None
        system = get_system(spec.system) if spec is not None else None
        if valid("job") is not None and system is not None and system.job_pattern is not None:
            job = valid("job")
            if not system.job_pattern.fullmatch(job):
                problem(at("job"), f"job {job!r}: {system.title} takes {system.job_help}")
                job = None
        elif valid("job") is not None:
            job = self._job(valid("job"), valid("project"), valid("region"), defaults, at, problem)
        if system is not None and spec is not None:
            for name in unsupported(system, set(spec.overrides.model_fields_set)):
                problem(
                    at("overrides", name),
                    f"overrides.{name}: {system.title} (system: {system.name}) has no {name}",
                )
            if not system.secrets:
                for env_name in spec.overrides.secret_env:
                    problem(
                        at("overrides", "env", env_name),
                        f"overrides.env.{env_name}: {system.title} (system: {system.name})"
                        " cannot read an env var from Secret Manager; pass a value",
                    )
        scope = self._scope(spec, defaults, at, problem) if spec is not None else None
        pattern = None
        if valid("match", kind=dict) is not None:
            try:
                pattern = compile_pattern(valid("match", kind=dict), self.intern)
            except PatternError as exc:
                for path, message in exc.problems:
                    dotted = ".".join(str(p) for p in path)
                    problem(
                        at("match", *path),
                        f"match.{dotted}: {message}" if dotted else f"match: {message}",
                    )
        # What the rule's events can hold: templates and `when:` may read only that.
        kinds = spec.kinds if spec is not None else None
        condition = None
        if valid("when") is not None:
            try:
                condition = compile_condition(valid("when"), kinds)
            except ConditionProblem as exc:
                problem(at("when"), str(exc))

        template_lines: dict[str, int | None] = {}

        def template(field: str, path: tuple[str | int, ...], source: str) -> Template | None:
            template_lines[field] = at(*path)
            try:
                # Equal templates of the file's rules are compiled once and shared.
                return self.intern.built(
                    "template", (source, kinds), lambda: compile_template(source, kinds)
                )
            except TemplateProblem as exc:
                problem(at(*path), f"{field}: {exc}")
                return None

        args = None
        if valid("overrides", "args", kind=list) is not None:
            args = self.intern(
                tuple(
                    template(f"args[{i}]", ("overrides", "args", i), a)
                    for i, a in enumerate(valid("overrides", "args", kind=list))
                )
            )
        env = self.intern(
            tuple(
                (key, template(f"env.{key}", ("overrides", "env", key), value))
                for key, value in (valid("overrides", "env", kind=dict) or {}).items()
                if isinstance(value, str)  # else a secret reference: nothing to render
            )
        )
        dedup_key = None
        if valid("dedup", "key") is not None:
            dedup_key = template("dedup.key", ("dedup", "key"), valid("dedup", "key"))
        batch_key = None
        if valid("batch", "key") is not None:
            batch_key = template("batch.key", ("batch", "key"), valid("batch", "key"))
        flow = None
        if spec is not None and system is not None:
            flow = build_flow(spec, self.file_limits, system, at, problem)

        if spec is None or job is None or len(self.problems) > before:
            return None
        intern = self.intern
        types = intern(frozenset(t for on in spec.on for t in ON_SHORTHANDS.get(on, (on,))))
        rule = Rule(
            name=spec.name,
            # The JSON text of the spec, not the pydantic model (see _spec_text.py).
            spec_source=dump_spec(spec) or spec,
            options=intern(RunOptions.of(spec)),
            types=types,
            job=intern(job),
            location=Location(self.file, line),
            scope=scope,
            pattern=pattern,
            condition=condition,
            # No new problem above: every template compiled (a failed one adds a problem).
            args=cast("tuple[Template, ...] | None", args),
            env=cast("tuple[tuple[str, Template], ...]", env),
            dedup_key=dedup_key,
            schedule=_schedule(spec),
            template_lines={k: v for k, v in template_lines.items() if v is not None},
            flow=flow,
            batch_key=batch_key,
        )
        if spec.example is not None:
            # The example is the rule's own test: it must decode, match and plan, now.
            from .samples import example_problem

            wrong = example_problem(rule)
            if wrong is not None:
                problem(at("example"), wrong)
                return None
        return rule

    def _job(
        self,
        job: str,
        rule_project: str | None,
        rule_region: str | None,
        defaults: dict[str, str],
        at,
        problem,
    ) -> str | None:
        full = FULL_JOB.match(job)
        if full:
            project, region, job_id = full["project"], full["region"], full["job"]
        elif "/" in job:
            problem(at("job"), f"job {job!r}: use a job id or projects/P/locations/R/jobs/J")
            return None
        else:
            project = rule_project or defaults.get("project")
            region = rule_region or defaults.get("region")
            job_id = job
            missing = [k for k, v in (("project", project), ("region", region)) if not v]
            if missing:
                problem(
                    at("job"),
                    f"job {job!r} is a short name but no {' or '.join(missing)} is set "
                    "(set it on the rule, at the top of the file, or use the full job name)",
                )
                return None
        ok = True
        if not JOB_ID.match(job_id):
            problem(
                at("job"),
                f"job id {job_id!r} is not a valid Cloud Run job name (lowercase letters, "
                "digits and '-', starting with a letter, at most 63 characters)",
            )
            ok = False
        if not PROJECT_ID.match(project):
            where = at("project") if rule_project else at("job")
            problem(where, f"project {project!r} is not a valid project id")
            ok = False
        if not REGION.match(region):
            where = at("region") if rule_region else at("job")
            problem(where, f"region {region!r} is not a valid region")
            ok = False
        return f"projects/{project}/locations/{region}/jobs/{job_id}" if ok else None

    def _scope(self, spec: RuleSpec, defaults: dict[str, str], at, problem):
        """The implicit pattern that topic/subscription/bucket/schedule stand for."""
        data: dict[str, list[str]] = {}
        project = spec.project or defaults.get("project")
        for field, collection in (("topic", "topics"), ("subscription", "subscriptions")):
            value = getattr(spec, field)
            if value is None:
                continue
            if value.startswith("projects/"):
                data[field] = [value]
            elif "/" in value:
                problem(
                    at(field),
                    f"{field} {value!r}: use a short name or projects/P/{collection}/NAME",
                )
            elif project:
                data[field] = [f"projects/{project}/{collection}/{value}"]
            else:
                problem(at(field), f"{field} {value!r} is a short name but no project is set")
        if spec.bucket is not None:
            data["bucket"] = [spec.bucket]
        if spec.schedule is not None or spec.scheduler_job is not None:
            data["job_name"] = [spec.scheduler_job or spec.name]
        return compile_pattern({"data": data}, self.intern) if data else None


def _schedule(spec: RuleSpec):
    if spec.schedule is None:
        return None
    from .schedule import Schedule  # validated by the schema already

    return Schedule(spec.schedule, spec.time_zone)


def _unknown_field(name: str, known: tuple[str, ...]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(known)})"
    return f"unknown field '{name}'{hint}"


def _pydantic_message(loc: tuple, error: Mapping[str, Any]) -> str:
    where = ".".join(str(p) for p in loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = loc[:-1]
        known = _RULE_FIELDS if not parent else _known_fields(parent)
        return (
            _unknown_field(str(loc[-1]), known)
            if not parent
            else f"{'.'.join(map(str, parent))}: " + _unknown_field(str(loc[-1]), known)
        )
    if kind == "missing":
        return f"{where}: required field is missing"
    if kind == "model_type" and loc in (("limits",), ("batch",)):
        return f"{where}: must be a mapping of {', '.join(_known_fields(loc))}"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _known_fields(parent: tuple) -> tuple[str, ...]:
    from .schema import DedupSpec, OverridesSpec, SecretRefSpec
    from .schema_flow import BatchSpec, LimitsSpec

    if parent[:2] == ("overrides", "env") and len(parent) == 3:
        return tuple(SecretRefSpec.model_fields)  # a secret reference's own fields

    models: dict[str, type[BaseModel]] = {
        "overrides": OverridesSpec,
        "dedup": DedupSpec,
        "limits": LimitsSpec,
        "batch": BatchSpec,
    }
    model = models.get(str(parent[0]))
    return tuple(model.model_fields) if model else ()
