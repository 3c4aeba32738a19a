"""Plain field substitutions render without Jinja, and exactly as Jinja renders them.

`Template.render` takes the fast path (`rules/_substitution.py`) for templates of literal text
and `{{ path }}` / `{{ path | basename|dirname|stem|extension }}` fields, and falls back to the
sandbox whenever the result could differ. The property test renders generated templates against
generated documents both ways and compares: same text, or the fast path stood aside.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triggers.rules import _sandbox, _substitution, templates
from triggers.rules.templates import VARIABLES, Template, compile_template

# Keys that are also dict attributes (`data.items` is a method in Jinja), dunders, ordinary keys.
KEYS = ["name", "bucket", "size", "a", "b", "items", "keys", "get", "__class__", "x_1"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False),
    st.text(alphabet="ab/.c {}%#\n\u00e9", max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)
    ),
    max_leaves=12,
)
documents = st.fixed_dictionaries(
    {
        "id": st.text(max_size=5),
        "type": st.just("t"),
        "data": st.dictionaries(st.sampled_from(KEYS), values, max_size=5),
    },
    optional={"subject": st.text(max_size=5)},
)
random_paths = st.builds(
    lambda head, rest: ".".join([head, *rest]),
    st.sampled_from(sorted(VARIABLES) + ["data", "data", "event"]),
    st.lists(st.sampled_from(KEYS + ["data"]), max_size=3),
)
literals = st.text(alphabet="ab/-_.:# {}%\n", max_size=6)
FILTERS = st.one_of(st.none(), st.sampled_from(["basename", "dirname", "stem", "extension"]))


def paths_in(document: dict) -> list[str]:
    """Every dotted path that leads through dicts of `document` (and `event.` + each)."""
    found: list[str] = []

    def walk(prefix: str, value) -> None:
        found.append(prefix)
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}", inner)

    for key, value in document.items():
        walk(key, value)
    return found + [f"event.{path}" for path in found]


def sources_for(document: dict):
    """Templates whose fields mostly exist in `document` (so the fast path is exercised), some
    with random paths (so its refusals are too)."""
    field = st.builds(
        lambda path, spaces, flt: (
            "{{" + spaces + path + (f" | {flt}" if flt else "") + spaces + "}}"
        ),
        st.one_of(st.sampled_from(paths_in(document)), random_paths),
        st.sampled_from(["", " ", "  "]),
        FILTERS,
    )
    return st.builds(
        lambda pieces, tail: "".join(a + b for a, b in pieces) + tail,
        st.lists(st.tuples(literals, field), min_size=1, max_size=4),
        literals,
    )


def jinja(source: str, document: dict) -> tuple[str, str]:
    """('ok', text) or ('error', type name): what the sandbox makes of it."""
    compiled = templates._compile(source)
    context = dict(document)
    context["event"] = document
    try:
        return "ok", _sandbox.render_bounded(compiled, context)
    except Exception as exc:  # noqa: BLE001 - any error: the fast path must stand aside
        return "error", type(exc).__name__


def fast_path_agrees(source: str, document: dict) -> bool:
    """Asserts that the fast path, when it answers, answers what Jinja does; True if it did."""
    try:
        compile_template(source)
    except Exception:  # noqa: BLE001 - not a valid rule template (e.g. a stray `{{`): skip
        return False
    parsed = _substitution.parse(source, VARIABLES)
    if not parsed:
        return False
    context = dict(document)
    context["event"] = document
    fast = _substitution.render(parsed, context, _sandbox.MAX_VALUE_CHARS)
    if fast is None:
        return False
    assert jinja(source, document) == ("ok", fast)
    return True


@settings(max_examples=800, deadline=None)
@given(st.data())
def test_the_fast_path_renders_what_jinja_renders_or_stands_aside(data):
    document = data.draw(documents)
    fast_path_agrees(data.draw(sources_for(document)), document)


def test_the_generated_templates_do_reach_the_fast_path():
    # A generator that never reached the fast path would make the property test vacuous.
    taken: list[bool] = []

    @settings(max_examples=200, deadline=None, derandomize=True)
    @given(st.data())
    def sample(data):
        document = data.draw(documents)
        taken.append(fast_path_agrees(data.draw(sources_for(document)), document))

    sample()
    assert sum(taken) >= len(taken) // 5


@pytest.mark.parametrize(
    "source",
    [
        "{{ data.bucket }}/{{ data.name }}#{{ data.generation }}",
        "--table={{ data.name | stem }}",
        "--input=gs://{{data.bucket}}/{{ data.name }}",
        "{{ event.id }}",
        "{{ data.size }}",
    ],
)
def test_the_sample_rules_templates_take_the_fast_path(source, monkeypatch):
    document = {
        "id": "e-1",
        "type": "t",
        "data": {"bucket": "raw", "name": "in/a.csv", "generation": "7", "size": 12},
    }
    expected = jinja(source, document)
    assert expected[0] == "ok"
    # GIVEN Jinja made unavailable to the render: only the fast path can answer
    template = Template(source, _compiled=None, _literal=False)
    monkeypatch.setattr(templates, "_compile", _no_jinja)
    monkeypatch.setattr(_sandbox, "render_bounded", _no_jinja)
    assert template.render(document) == expected[1]


def _no_jinja(*args, **kwargs):
    raise AssertionError("Jinja was used")


@pytest.mark.parametrize(
    ("source", "document"),
    [
        ("{{ data.missing }}", {"data": {}}),  # StrictUndefined: Jinja's own error
        ("{{ data.items }}", {"data": {"items": "x"}}),  # a dict attribute, not the key
        ("{{ data.a.b }}", {"data": {"a": "text"}}),  # not a dict along the path
        ("{{ data.n | stem }}", {"data": {"n": 5}}),  # a filter given a number
        ("{{ data.d }}", {"data": {"d": {"k": 1}}}),  # a dict rendered: Python's repr
        ("a\r\n{{ data.x }}", {"data": {"x": "1"}}),  # Jinja normalises the line ending
    ],
)
def test_whatever_might_differ_is_left_to_jinja(source, document):
    parsed = _substitution.parse(source, VARIABLES)
    context = dict(document)
    context["event"] = document
    assert not parsed or _substitution.render(parsed, context, _sandbox.MAX_VALUE_CHARS) is None
    # and the template still renders (or fails) as Jinja says
    template = Template(source, _compiled=None, _literal=False)
    expected = jinja(source, document)
    if expected[0] == "ok":
        assert template.render(document) == expected[1]
    else:
        with pytest.raises(Exception) as info:
            template.render(document)
        assert type(info.value).__name__ == expected[1]


def test_an_output_over_the_bound_is_left_to_jinja_which_refuses_it():
    parsed = _substitution.parse("{{ data.x }}{{ data.x }}", VARIABLES)
    big = "y" * (_sandbox.MAX_VALUE_CHARS // 2 + 1)
    assert _substitution.render(parsed, {"data": {"x": big}}, _sandbox.MAX_VALUE_CHARS) is None


def test_the_bound_is_the_sandboxs():
    assert templates._MAX_VALUE_CHARS == _sandbox.MAX_VALUE_CHARS
