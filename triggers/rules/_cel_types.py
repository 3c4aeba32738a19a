"""CEL environments whose `data` is typed after triggers/events/fields.py, for the load check.

cel-expr-python declares structured types through a protobuf descriptor pool, so each kind's
`data` shape becomes a generated proto3 message: a closed object is a message, a string / int /
bool leaf its wrapper type (nullable in CEL, as the JSON value may be missing or null), a string
map `map<string, string>`, and free-form content `google.protobuf.Value` (CEL's dyn). The CEL
checker then refuses unknown fields and type errors (`data.size >= "100"`) at load.

These environments only check: events are evaluated by the plain environment (`data` is dyn),
because a document is a dict, not a proto message. Built lazily, once per set of kinds; loaded
only when a rules file has a `when:`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from triggers.events.fields import BOOL, INT, OPEN, STRING, STRING_MAP, Shape, merged_data_shape

_WRAPPERS = {
    STRING: ".google.protobuf.StringValue",
    INT: ".google.protobuf.Int64Value",
    BOOL: ".google.protobuf.BoolValue",
}

# frozenset of kinds -> (env or None when `data` is open, {proto message name: (shown path,
# field names)}) for did-you-mean messages.
_cache: dict[tuple[frozenset[str], bool], tuple[Any, dict[str, tuple[str, tuple[str, ...]]]]] = {}


def typed_env(
    kinds: frozenset[str], *, ints_as_doubles: bool = False
) -> tuple[Any, dict[str, tuple[str, tuple[str, ...]]]]:
    """A CEL environment whose `data` has the merged shape of `kinds` (None if that is open),
    and the generated message names with the `data.` path and fields each stands for.

    `ints_as_doubles` declares the int fields as doubles: the runtime compares an int with a
    double (`data.size > 1.5` on dyn data works), but this checker has no such overloads and
    cannot be given them, so a condition that fails the int check is tried again this way.
    """
    key = (kinds, ints_as_doubles)
    if key not in _cache:
        _cache[key] = _build(kinds, ints_as_doubles)
    return _cache[key]


def _build(
    kinds: frozenset[str], ints_as_doubles: bool
) -> tuple[Any, dict[str, tuple[str, tuple[str, ...]]]]:
    shape = merged_data_shape(kinds)
    if not isinstance(shape, Mapping):
        return None, {}
    from cel_expr_python import cel
    from google.protobuf import descriptor_pb2, descriptor_pool, struct_pb2, wrappers_pb2

    pool = descriptor_pool.DescriptorPool()
    for module in (struct_pb2, wrappers_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        pool.Add(proto)
    package = "triggers_fields." + "_".join(sorted(kinds)) + ("_d" if ints_as_doubles else "")
    file = descriptor_pb2.FileDescriptorProto(
        name=package.replace(".", "/") + ".proto",
        package=package,
        syntax="proto3",
        dependency=["google/protobuf/struct.proto", "google/protobuf/wrappers.proto"],
    )
    names: dict[str, tuple[str, tuple[str, ...]]] = {}
    wrappers = dict(_WRAPPERS, **({INT: ".google.protobuf.DoubleValue"} if ints_as_doubles else {}))
    _message(file.message_type.add(), "data", "data", shape, f"{package}.data", names, wrappers)
    pool.Add(file)
    env = cel.NewEnv(
        descriptor_pool=pool,
        variables={
            "event": cel.Type.Map(cel.Type.STRING, cel.Type.DYN),
            "data": cel.Type(f"{package}.data"),
        },
    )
    return env, names


def _message(
    message: Any,
    name: str,
    shown: str,
    shape: Mapping[str, Shape],
    full_name: str,
    names: dict[str, tuple[str, tuple[str, ...]]],
    wrappers: Mapping[str, str],
) -> None:
    from google.protobuf import descriptor_pb2

    field_type = descriptor_pb2.FieldDescriptorProto
    message.name = name
    names[full_name] = (shown, tuple(sorted(shape)))
    for number, (field, sub) in enumerate(sorted(shape.items()), start=1):
        entry = message.field.add(name=field, number=number, label=field_type.LABEL_OPTIONAL)
        entry.type = field_type.TYPE_MESSAGE
        if isinstance(sub, Mapping):
            # Proto forbids a nested type and a field of one name: suffix the type.
            nested = f"{field}_fields"
            _message(
                message.nested_type.add(),
                nested,
                f"{shown}.{field}",
                sub,
                f"{full_name}.{nested}",
                names,
                wrappers,
            )
            entry.type_name = f".{full_name}.{nested}"
        elif sub == STRING_MAP:
            # Proto requires a map's entry type to be named `<CamelCaseField>Entry`.
            entry_name = "".join(part[:1].upper() + part[1:] for part in field.split("_"))
            map_entry = message.nested_type.add(name=f"{entry_name}Entry")
            map_entry.options.map_entry = True
            for key_number, key in ((1, "key"), (2, "value")):
                map_entry.field.add(
                    name=key,
                    number=key_number,
                    type=field_type.TYPE_STRING,
                    label=field_type.LABEL_OPTIONAL,
                )
            entry.label = field_type.LABEL_REPEATED
            entry.type_name = f".{full_name}.{entry_name}Entry"
        elif sub in wrappers:
            entry.type_name = wrappers[sub]
        else:  # OPEN, or a field the kinds type differently
            assert sub == OPEN, sub
            entry.type_name = ".google.protobuf.Value"
