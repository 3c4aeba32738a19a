"""Rules that cannot hurt the loader, nor the function: the bounded sandbox of rule templates.

At load: everything the sandbox would refuse at render is refused with `file:line`, and constant
expressions are never folded into a huge value (`{{ 'a' * 10**9 }}` took 4 GiB in validate).
At render: operators, padding methods, `replace`, `~` and the output itself are bounded, and a
value over the limit is a permanent RenderError for that event, never an allocation.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from triggers.errors import RenderError, RulesError
from triggers.events.model import STORAGE_FINALIZED, Event
from triggers.rules import load_text
from triggers.rules._sandbox import MAX_VALUE_CHARS

ROOT = Path(__file__).resolve().parents[2]


def rules_with_arg(template: str) -> str:
    """A rules file whose one rule has `template` as its first arg, on line 8."""
    quoted = template.replace("'", "''")
    return textwrap.dedent(
        f"""\
        project: demo-project
        region: europe-west1
        rules:
          - name: r
            on: com.example.thing.v1  # free-form data: the sandbox, not fields, is tested
            job: loader
            overrides:
              args: ['{quoted}']
        """
    )


def load_problem(template: str) -> str:
    with pytest.raises(RulesError) as info:
        load_text(rules_with_arg(template), name="rules.yaml", environ={})
    [problem] = info.value.problems
    assert (problem.file, problem.line, problem.rule) == ("rules.yaml", 8, "r")
    return problem.message


REFUSED_AT_LOAD = [
    ("{{ data.__class__ }}", "attribute '__class__' is not allowed"),
    ("{{ data.__class__.__mro__[1].__subclasses__() }}", "is not allowed: names starting with '_'"),
    ("{{ data._private }}", "attribute '_private' is not allowed"),
    ("{{ data['__globals__'] }}", "attribute '__globals__' is not allowed"),
    ("{{ (data.name|basename).__globals__ }}", "attribute '__globals__' is not allowed"),
    ("{{ data|attr('name') }}", "filter 'attr' is not allowed"),
    ("{{ data.items()|map('attr', 'x')|list }}", "filter 'attr' is not allowed"),
    ("{{ data.items()|sort(attribute='__class__') }}", "attribute '__class__' is not allowed"),
    ("{% import 'other' as o %}{{ o }}", "{% import %} is not allowed"),
    ("{% from 'other' import x %}{{ x }}", "{% from %} is not allowed"),
    ("{% include 'other' %}", "{% include %} is not allowed"),
    ("{% extends 'base' %}", "{% extends %} is not allowed"),
    ("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "macros are not allowed"),
    ("{{ data.metadata.update({'a': 1}) }}", "'.update' is not allowed"),
    ("{{ data.tags.append(1) }}", "'.append' is not allowed"),
    ("{{ data.name.mro() }}", "'.mro()' is not allowed"),
    ("{{ '{:>999999999}'.format(data.name) }}", "'.format()' is not allowed"),
    ("{{ data.name.format_map(data) }}", "'.format_map()' is not allowed"),
    ("{{ data.update }}", "'.update' is not allowed: templates cannot change the event"),
    ("{{ data.tags.sort() }}", "'.sort' is not allowed"),
    ("{{ data.name|center(99) }}", "filter 'center' is not allowed"),
    ("{{ data.name|format(1) }}", "filter 'format' is not allowed"),
    ("{{ data.name|indent(99) }}", "filter 'indent' is not allowed"),
    ("{{ [1, 2]|random }}", "filter 'random' is not allowed"),
    ("{{ data.name|wordwrap(5) }}", "filter 'wordwrap' is not allowed"),
    ("{{ range(10)|list }}", "unknown variable 'range'"),
    ("{{ lipsum(1000000) }}", "unknown variable 'lipsum'"),
    # Constant folding: refused before Jinja's optimizer could build the value.
    ("{{ 'a' * 10**9 }}", f"* would make a value of 1000000000 items, over {MAX_VALUE_CHARS}"),
    ("{{ [0] * 10**9 }}", "* would make a value of 1000000000 items"),
    ("{{ 10**9 * 'ab' }}", "* would make a value of 2000000000 items"),
    ("{{ 2 ** 1000000000 }}", "** would make a number of about 2000000000 bits"),
    ("{{ '%999999999s' % 1 }}", "% formatting with a width over 4096"),
    ("{{ '%.*f' % (999999999, 1) }}", "% formatting with a width over 4096"),
    ("{{ 'a'.ljust(10**9) }}", "str.ljust would make a value of 1000000000 items"),
    ("{{ data.name.zfill(2000000) }}", "str.zfill would make a value of 2000000 items"),
]


@pytest.mark.parametrize("template, message", REFUSED_AT_LOAD, ids=[t for t, _ in REFUSED_AT_LOAD])
def test_refused_at_load_with_file_line_and_rule(template, message):
    assert message in load_problem(template)


def test_a_problem_in_a_template_of_several_lines_names_the_template_line():
    with pytest.raises(RulesError) as info:
        load_text(
            textwrap.dedent(
                """\
                project: demo-project
                region: europe-west1
                rules:
                  - name: r
                    on: storage
                    job: loader
                    dedup:
                      key: |
                        {{ data.bucket }}
                        {{ data.__class__ }}
                """
            ),
            name="rules.yaml",
            environ={},
        )
    [problem] = info.value.problems
    assert problem.line == 8
    assert "(template line 2)" in problem.message and "__class__" in problem.message


def test_validate_refuses_the_folding_attack_within_a_small_memory_limit(tmp_path):
    """`triggers validate` as a process capped at 512 MiB of address space: folding
    `'a' * 10**10` would need 10 GB and die with MemoryError instead of listing the problem."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_with_arg("{{ 'a' * 10**10 }}{{ [1] * 10**10 }}"))

    def limit_memory() -> None:
        cap = 512 * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    result = subprocess.run(
        [sys.executable, "-m", "triggers.cli", "validate", str(rules)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        preexec_fn=limit_memory,
    )
    assert result.returncode == 1, result.stderr
    assert f"{rules}:8: rule 'r': args[0]: * would make a value of 10000000000 items" in (
        result.stderr
    )
    assert "MemoryError" not in result.stderr


# -- render time: what depends on the event -------------------------------------------------


def event(**data) -> Event:
    base = {"bucket": "raw", "name": "in/a.csv", "generation": 7}
    return Event(
        id="e-1",
        source="//storage.googleapis.com/projects/_/buckets/raw",
        type=STORAGE_FINALIZED,
        kind="storage",
        form="cloudevent-binary",
        data={**base, **data},
    )


def plan_arg(template: str, **data) -> str:
    rules = load_text(rules_with_arg(template), name="rules.yaml", environ={})
    request = rules.get("r").plan(event(**data))
    return request.overrides.args[0]


def render_error(template: str, **data) -> RenderError:
    rules = load_text(rules_with_arg(template), name="rules.yaml", environ={})
    with pytest.raises(RenderError) as info:
        rules.get("r").plan(event(**data))
    assert info.value.location == "rules.yaml:8" and info.value.field == "args[0]"
    return info.value


BOUNDED_AT_RENDER = [
    ("{{ data.name * data.n }}", {"n": 10**9}, "* would make a value of 8000000000 items"),
    ("{{ [data.name] * data.n }}", {"n": 10**9}, "* would make a value of 1000000000 items"),
    ("{{ data.n ** data.n }}", {"n": 10**6}, "** would make a number of about"),
    ("{{ '%*s' % (data.n, 'x') }}", {"n": 10**9}, "% formatting with a width over 4096"),
    ("{{ data.name.ljust(data.n) }}", {"n": 10**9}, "str.ljust would make a value"),
    ("{{ data.name.rjust(data.n, '-') }}", {"n": 10**9}, "str.rjust would make a value"),
    ("{{ data.name.replace('', data.big) }}", {"big": "x" * 200_000}, "replace would make"),
    ("{{ data.name|replace('a', data.big) }}", {"big": "x" * 2_000_000}, "replace would make"),
    (
        "{% set a = data.big ~ data.big %}{% set b = a ~ a ~ a ~ a %}{{ b ~ b }}",
        {"big": "x" * 100_000},
        "~ would make a value of 1600000 items",
    ),
    (
        "{% for a in data.rows %}{% for b in data.rows %}{{ data.big }}{% endfor %}{% endfor %}",
        {"rows": list(range(1000)), "big": "x" * 1000},
        f"rendered value is over {MAX_VALUE_CHARS} characters",
    ),
    ("{{ data.big + data.big }}", {"big": "x" * 600_000}, "+ would make a value of 1200000"),
]


@pytest.mark.parametrize(
    "template, data, message", BOUNDED_AT_RENDER, ids=[t for t, _, _ in BOUNDED_AT_RENDER]
)
def test_values_over_the_limit_are_a_permanent_render_error(template, data, message):
    error = render_error(template, **data)
    assert "SecurityError" in error.message and message in error.message


ALLOWED = [
    ("{{ '%05d' % data.generation }}", {}, "00007"),
    ("{{ data['_key'] }}", {"_key": "k"}, "k"),
    ("{{ data.name|replace('/', '-') }}", {}, "in-a.csv"),
    ("{{ data.name.replace('a', 'b').upper() }}", {}, "IN/B.CSV"),
    ("{{ data.tags|map(attribute='v')|join(',') }}", {"tags": [{"v": 1}, {"v": 2}]}, "1,2"),
    ("{{ data.name * 3 }}", {"name": "ab"}, "ababab"),
    ("{{ data.name.ljust(6, '.') }}", {"name": "ab"}, "ab...."),
    ("{{ data.meta.get('x', 'none') }}", {"meta": {}}, "none"),
    ("{{ data.name|stem }}-{{ data.generation + 1 }}", {}, "a-8"),
    ("{% for t in data.tags %}{{ t }};{% endfor %}", {"tags": ["a", "b"]}, "a;b;"),
    # Fields named like methods dicts do not have are reached by dot, as before.
    ("{{ data.format }}/{{ data.sort }}", {"format": "csv", "sort": "asc"}, "csv/asc"),
    ("{{ data['update'] }}", {"update": "u"}, "u"),
    ("{{ data.rows|map(attribute='_id')|join }}", {"rows": [{"_id": 1}, {"_id": 2}]}, "12"),
    ("{{ data.tags|sort|first }}", {"tags": ["b", "a"]}, "a"),
]


@pytest.mark.parametrize("template, data, rendered", ALLOWED, ids=[t for t, _, _ in ALLOWED])
def test_ordinary_templates_still_load_and_render(template, data, rendered):
    assert plan_arg(template, **data) == rendered


def test_a_deferred_template_is_checked_when_first_compiled():
    # A rule from a compiled artifact is compiled on its first render without the load-time
    # walk having run in this process: the walk runs then, and the event is rejected for good.
    from triggers.rules.templates import deferred_template

    template = deferred_template("{{ data.__class__ }}")
    with pytest.raises(ValueError, match="attribute '__class__' is not allowed"):
        template.render({"data": {}})
