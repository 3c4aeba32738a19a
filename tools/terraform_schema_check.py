"""Check Terraform files against the providers' real schemas, offline.

No terraform binary or provider plugin can be downloaded where this runs, but the providers'
schemas can: the PyPI wheels of the prebuilt CDKTF providers (`cdktf-cdktf-provider-google`
16.12.1 = hashicorp/google 6.50.0, `-archive` 11.0.1 = hashicorp/archive 2.7.1, `-time` 11.0.1
= hashicorp/time 0.13.1) hold jsii assemblies (`_jsii/*.jsii.tgz`, one `.jsii` JSON document)
generated from each provider's schema: every resource and data source, each argument with its
required flag, each nested block and whether it holds one item (max_items = 1) or several, and
the attributes a resource exports. This script parses every `.tf` (python-hcl2) and checks,
like `terraform validate` would:

  * resource and data source types exist;
  * argument and block names at each nesting level, `dynamic` blocks included (a dynamic block
    must name a block, and its `content` is checked against that block);
  * arguments given as blocks and blocks given as arguments;
  * required arguments and required blocks are present;
  * a single block (max_items = 1) is not repeated;
  * references `TYPE.NAME.attr[...].sub` name a resource declared in the same module and
    attributes (exported or nested) that exist;
  * the `required_providers` lower bound is not older than the schema checked (nor than any
    allow-listed attribute below).

It runs from its own virtual environment (`.venv-tfschema`, made by the README's test command),
like checkov: `python-hcl2` plus the three wheels, installed with `--no-deps` (their runtime,
jsii and node, is never used: only the JSON is read).

    .venv-tfschema/bin/python tools/terraform_schema_check.py terraform [--json]

Exit status 0 with no findings, 1 with findings, 2 when the schemas cannot be found.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

PROVIDER_PACKAGES = (
    "cdktf_cdktf_provider_google",
    "cdktf_cdktf_provider_archive",
    "cdktf_cdktf_provider_time",
)

# Attributes the module may use although the checked schema (google 6.50.0) lacks them. Each
# entry names the provider version that added it; the module's `required_providers` lower bound
# must be at least that version (checked below). Shape: (resource type, block path) -> name ->
# "argument" or a nested {"single": bool, "args": {...}} block. Empty on purpose: the module
# needs nothing newer than 6.50 (google_eventarc_trigger.retry_policy, 7.14, was dropped: in
# 7.x it only accepts max_attempts = 1, i.e. it can only disable Eventarc's retries, which
# would lose every event whose first delivery gets a 503 -- see terraform/README.md).
ALLOW_NEWER: dict[tuple[str, tuple[str, ...]], dict[str, tuple[str, Any]]] = {
    # ("google_eventarc_trigger", ()): {
    #     "retry_policy": ("7.14.0", {"single": True, "args": {"max_attempts": False}}),
    # },
}

META_ARGUMENTS = {"count", "for_each", "depends_on", "provider", "lifecycle"}
META_BLOCKS = {"lifecycle", "provisioner", "connection"}
_LINK = re.compile(
    r"\{@link https://registry\.terraform\.io/providers/hashicorp/(\w+)/"
    r"([\d.]+)/docs(?:/(resources|data-sources)/\w+)? (\w+)\}"
)
_ANCHOR = re.compile(r"/docs/(?:resources|data-sources)/\w+#([a-z0-9_]+) ")


@dataclass
class Block:
    """Arguments (name -> required) and nested blocks of one block type."""

    args: dict[str, bool] = field(default_factory=dict)
    blocks: dict[str, Nested] = field(default_factory=dict)


@dataclass
class Nested:
    block: Block
    single: bool
    required: bool


@dataclass
class Exported:
    """What `TYPE.NAME.<attr>` may name: attribute -> nested Exported, or None for a leaf."""

    attrs: dict[str, Exported | None] = field(default_factory=dict)
    is_list: bool = False


@dataclass
class Schemas:
    versions: dict[str, str]  # provider -> version of the schema read
    resources: dict[tuple[str, str], tuple[Block, Exported]]  # ("resource"|"data", type)


@dataclass(frozen=True)
class Finding:
    file: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.where}: {self.message}"


# -- schemas from jsii assemblies ---------------------------------------------------------------


def find_assemblies(paths: Iterable[str] | None = None) -> list[Path]:
    """The `_jsii/*.jsii.tgz` of each provider package on `paths` (default: sys.path)."""
    found: list[Path] = []
    for package in PROVIDER_PACKAGES:
        for base in paths if paths is not None else sys.path:
            hits = sorted(glob.glob(os.path.join(base, package, "_jsii", "*.jsii.tgz")))
            if hits:
                found.append(Path(hits[0]))
                break
    return found


def _snake(camel: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", camel).lower()


def _doc_name(prop: dict[str, Any]) -> str:
    """The Terraform name of a jsii property: the registry anchor its docs link to."""
    docs = prop.get("docs", {})
    match = _ANCHOR.search(docs.get("remarks", "") + " " + docs.get("summary", ""))
    return match.group(1) if match else _snake(prop["name"])


class _Assembly:
    def __init__(self, types: dict[str, Any]) -> None:
        self.types = types
        self._blocks: dict[str, Block] = {}
        self._exported: dict[str, Exported] = {}

    def struct_of(self, typ: dict[str, Any]) -> tuple[str, bool] | None:
        """(struct fqn, single) when a property type is a nested block, else None."""
        fqn = typ.get("fqn")
        if fqn and self.types.get(fqn, {}).get("datatype"):
            return fqn, True
        for member in typ.get("union", {}).get("types", []):
            element = member.get("collection", {}).get("elementtype", {})
            efqn = element.get("fqn")
            if efqn and self.types.get(efqn, {}).get("datatype"):
                return efqn, False
        return None

    def block(self, fqn: str) -> Block:
        if fqn not in self._blocks:
            block = self._blocks[fqn] = Block()
            for prop in self.types[fqn].get("properties", []):
                name = _doc_name(prop)
                required = not prop.get("optional", False)
                nested = self.struct_of(prop["type"])
                if nested is None:
                    block.args[name] = required
                else:
                    block.blocks[name] = Nested(self.block(nested[0]), nested[1], required)
        return self._blocks[fqn]

    def exported(self, fqn: str, names: dict[str, str]) -> Exported:
        """Attributes of a resource class or an OutputReference (getters, not `*Input`)."""
        if fqn not in self._exported:
            out = self._exported[fqn] = Exported()
            for prop in self.types[fqn].get("properties", []):
                if prop.get("static") or prop["name"].endswith("Input"):
                    continue
                if prop["name"] in {"internalValue", "fqn", "friendlyUniqueId"}:
                    continue
                name = names.get(prop["name"], _snake(prop["name"]))
                out.attrs[name] = self._exported_type(prop["type"], names)
        return self._exported[fqn]

    def _exported_type(self, typ: dict[str, Any], names: dict[str, str]) -> Exported | None:
        fqn = typ.get("fqn", "")
        if fqn.endswith("OutputReference") and fqn in self.types:
            return self.exported(fqn, names)
        if fqn.endswith("List") and fqn in self.types:
            getter = next(
                (m for m in self.types[fqn].get("methods", []) if m["name"] == "get"), None
            )
            returns = (getter or {}).get("returns", {}).get("type", {}).get("fqn", "")
            if returns in self.types:
                element = self.exported(returns, names)
                return Exported(attrs=element.attrs, is_list=True)
        return None  # a string, number, map, ...: nothing to check below it


def _names_of(assembly: _Assembly, fqn: str, seen: set[str] | None = None) -> dict[str, str]:
    """camelCase -> Terraform name for every property of a config struct and its blocks."""
    seen = set() if seen is None else seen
    names: dict[str, str] = {}
    if fqn in seen:
        return names
    seen.add(fqn)
    for prop in assembly.types[fqn].get("properties", []):
        names[prop["name"]] = _doc_name(prop)
        nested = assembly.struct_of(prop["type"])
        if nested:
            names.update(_names_of(assembly, nested[0], seen))
    return names


def load_schemas(assemblies: Iterable[Path]) -> Schemas:
    versions: dict[str, str] = {}
    resources: dict[tuple[str, str], tuple[Block, Exported]] = {}
    for path in assemblies:
        with tarfile.open(path) as archive:
            member = next(m for m in archive.getmembers() if m.name.endswith(".jsii"))
            handle = archive.extractfile(member)
            assert handle is not None
            document = json.load(handle)
        assembly = _Assembly(document["types"])
        for fqn, typ in document["types"].items():
            if typ.get("kind") != "class" or not str(typ.get("base", "")).startswith("cdktf."):
                continue
            link = _LINK.search(typ.get("docs", {}).get("summary", ""))
            if not link:
                continue
            provider, version, kind, tf_name = link.groups()
            versions[provider] = version
            if kind is None or fqn + "Config" not in document["types"]:
                continue  # the provider block itself
            config = fqn + "Config"
            block = assembly.block(config)
            exported = assembly.exported(fqn, _names_of(assembly, config))
            # Arguments are readable as attributes too.
            for name in list(block.args) + list(block.blocks):
                exported.attrs.setdefault(name, None)
            resources[("resource" if kind == "resources" else "data", tf_name)] = (
                block,
                exported,
            )
    for (rtype, block_path), additions in ALLOW_NEWER.items():
        block, exported = resources[("resource", rtype)]
        for step in block_path:
            block = block.blocks[step].block
        for name, (_, spec) in additions.items():
            if spec == "argument":
                block.args[name] = False
            else:
                block.blocks[name] = Nested(
                    Block(args=dict(spec["args"])), spec["single"], required=False
                )
            if not block_path:
                exported.attrs.setdefault(name, None)
    return Schemas(versions, resources)


# -- the .tf side ---------------------------------------------------------------------------------


def _unquote(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _is_block_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, dict) and v.get("__is_block__") for v in value)
    )


def _nearest(name: str, options: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Checker:
    def __init__(self, schemas: Schemas) -> None:
        self.schemas = schemas
        self.findings: list[Finding] = []

    def check_dir(self, root: Path) -> list[Finding]:
        """Every module under `root` (each directory of .tf files is one module)."""
        modules: dict[Path, list[Path]] = {}
        for path in sorted(root.rglob("*.tf")):
            if ".terraform" in path.parts:
                continue
            modules.setdefault(path.parent, []).append(path)
        for files in modules.values():
            self.check_module(files, base=root.parent)
        return self.findings

    def check_module(self, files: list[Path], base: Path | None = None) -> list[Finding]:
        parsed = {}
        for path in files:
            shown = str(path.relative_to(base)) if base else str(path)
            try:
                with path.open() as handle:
                    parsed[shown] = hcl2.load(handle)
            except Exception as exc:  # lark's parse errors have no common public base
                self._add(shown, "parse", str(exc).splitlines()[0])
        declared = {
            (kind, _unquote(rtype), _unquote(name))
            for document in parsed.values()
            for kind in ("resource", "data")
            for entry in document.get(kind, [])
            for rtype, named in entry.items()
            for name in named
        }
        for shown, document in parsed.items():
            self._check_document(shown, document, declared)
        return self.findings

    def _add(self, file: str, where: str, message: str) -> None:
        self.findings.append(Finding(file, where, message))

    def _check_document(self, file: str, document: dict[str, Any], declared: set) -> None:
        for kind in ("resource", "data"):
            for entry in document.get(kind, []):
                for rtype, named in entry.items():
                    rtype = _unquote(rtype)
                    for name, body in named.items():
                        where = f"{'data.' if kind == 'data' else ''}{rtype}.{_unquote(name)}"
                        schema = self.schemas.resources.get((kind, rtype))
                        if schema is None:
                            if rtype.split("_")[0] in self.schemas.versions:
                                known = [t for k, t in self.schemas.resources if k == kind]
                                self._add(
                                    file,
                                    where,
                                    f"unknown {kind} type {rtype}{_nearest(rtype, known)}",
                                )
                            continue
                        self._check_block(file, where, body, schema[0], top=True)
        for terraform in document.get("terraform", []):
            self._check_constraints(file, terraform)
        for expression in _expressions(document):
            for reference in _references(expression):
                self._check_reference(file, reference, declared)

    def _check_block(
        self, file: str, where: str, body: dict[str, Any], schema: Block, top: bool = False
    ) -> None:
        present: set[str] = set()
        for key, value in body.items():
            if key.startswith("__"):  # python-hcl2's __is_block__, __comments__
                continue
            if key == "dynamic":
                for entry in value:
                    for name, dyn in entry.items():
                        name = _unquote(name)
                        if name not in schema.blocks:
                            hint = _nearest(name, schema.blocks)
                            self._add(
                                file,
                                f"{where}.dynamic.{name}",
                                f"no block type {name!r} here{hint}",
                            )
                            continue
                        present.add(name)
                        for content in dyn.get("content", []):
                            self._check_block(
                                file, f"{where}.{name}", content, schema.blocks[name].block
                            )
                continue
            if top and (key in META_ARGUMENTS or key in META_BLOCKS):
                continue
            if key in schema.blocks:
                nested = schema.blocks[key]
                if not _is_block_list(value):
                    self._add(file, f"{where}.{key}", "is a block: write `key { ... }`")
                    continue
                present.add(key)
                if nested.single and len(value) > 1:
                    self._add(
                        file,
                        f"{where}.{key}",
                        f"at most one {key} block is allowed, found {len(value)}",
                    )
                for item in value:
                    self._check_block(file, f"{where}.{key}", item, nested.block)
            elif key in schema.args:
                if _is_block_list(value):
                    self._add(file, f"{where}.{key}", "is an argument: write `key = ...`")
                present.add(key)
            else:
                hint = _nearest(key, list(schema.args) + list(schema.blocks))
                self._add(file, f"{where}.{key}", f"unsupported argument or block{hint}")
        for name, required in schema.args.items():
            if required and name not in present:
                self._add(file, where, f"required argument {name!r} is missing")
        for name, nested in schema.blocks.items():
            if nested.required and name not in present:
                self._add(file, where, f"required block {name!r} is missing")

    def _check_constraints(self, file: str, terraform: dict[str, Any]) -> None:
        needed: dict[str, str] = dict(self.schemas.versions)
        for additions in ALLOW_NEWER.values():
            for added, _ in additions.values():
                if _version(added) > _version(needed["google"]):
                    needed["google"] = added
        for entry in terraform.get("required_providers", []):
            for provider, spec in entry.items():
                if provider not in needed or not isinstance(spec, dict):
                    continue
                constraint = str(_unquote(spec.get("version", "")))
                lower = re.search(r">=\s*([\d.]+)", constraint)
                floor = _version(needed[provider])[:2]
                if not lower or _version(lower.group(1))[:2] < floor:
                    self._add(
                        file,
                        f"required_providers.{provider}",
                        f"version {constraint!r} admits versions older than "
                        f"{'.'.join(map(str, floor))}, the schema checked here"
                        " (or an allow-listed attribute): raise its lower bound",
                    )

    def _check_reference(self, file: str, reference: list[str], declared: set) -> None:
        kind = "data" if reference[0] == "data" else "resource"
        parts = reference[1:] if kind == "data" else reference
        if len(parts) < 2:
            return
        rtype, name, rest = parts[0], parts[1], parts[2:]
        schema = self.schemas.resources.get((kind, rtype))
        shown = "".join(s if s.startswith("[") else f".{s}" for s in reference)[1:]
        if schema is None:
            return  # an unknown type is reported where it is declared
        if (kind, rtype, name) not in declared:
            self._add(file, shown, f"refers to {kind} {rtype}.{name}, which is not declared")
            return
        exported: Exported | None = schema[1]
        if rest and rest[0].startswith("["):
            rest = rest[1:]  # the instance key of count / for_each
        for step in rest:
            if exported is None:
                return
            if step.startswith("["):
                # A list of blocks, or a single block (SDKv2 exposes it as a list of one,
                # hence `service_config[0]`); maps and primitive lists stopped above.
                continue
            if step not in exported.attrs:
                self._add(
                    file,
                    shown,
                    f"{rtype} has no attribute {step!r} here{_nearest(step, exported.attrs)}",
                )
                return
            exported = exported.attrs[step]


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def _expressions(value: Any) -> Iterator[str]:
    """The `${...}` expressions anywhere in a parsed document."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _expressions(key)
            yield from _expressions(item)
    elif isinstance(value, list):
        for item in value:
            yield from _expressions(item)
    elif isinstance(value, str) and "${" in value:
        start = 0
        while (begin := value.find("${", start)) >= 0:
            depth, i = 0, begin + 1
            while i < len(value):
                if value[i] == "{":
                    depth += 1
                elif value[i] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            yield value[begin + 2 : i]
            start = i + 1


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_REF_START = re.compile(r"(?<![\w.\"])((?:data\.)?(?:google|archive|time)_\w+)\.(\w+)")


def _references(expression: str) -> Iterator[list[str]]:
    """`TYPE.NAME` references with the attribute / index steps that follow them."""
    text = _STRING.sub('""', expression)
    for match in _REF_START.finditer(text):
        steps = match.group(1).split(".") + [match.group(2)]
        i = match.end()
        while i < len(text):
            if text[i] == "[":
                depth, j = 0, i
                while j < len(text):
                    depth += {"[": 1, "]": -1}.get(text[j], 0)
                    if depth == 0:
                        break
                    j += 1
                steps.append(text[i : j + 1])
                i = j + 1
            elif text[i] == "." and (m := re.match(r"\.([A-Za-z_]\w*)", text[i:])):
                steps.append(m.group(1))
                i += m.end()
            else:
                break
        yield steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", help="directories (every .tf under them) or files")
    parser.add_argument("--json", action="store_true", help="findings as a JSON list")
    parser.add_argument("--site", action="append", help="where the provider wheels are installed")
    args = parser.parse_args(argv)
    assemblies = find_assemblies(args.site)
    if len(assemblies) != len(PROVIDER_PACKAGES):
        print(
            f"provider schemas not found (need {', '.join(PROVIDER_PACKAGES)}; the README's test"
            " command installs them in .venv-tfschema)",
            file=sys.stderr,
        )
        return 2
    checker = Checker(load_schemas(assemblies))
    for raw in args.paths:
        path = Path(raw)
        if path.is_dir():
            checker.check_dir(path)
        else:
            checker.check_module([path])
    if args.json:
        print(json.dumps([f.__dict__ for f in checker.findings], indent=2))
    else:
        for finding in checker.findings:
            print(finding)
        versions = ", ".join(f"{p} {v}" for p, v in sorted(checker.schemas.versions.items()))
        print(f"{len(checker.findings)} finding(s) against {versions}", file=sys.stderr)
    return 1 if checker.findings else 0


if __name__ == "__main__":
    sys.exit(main())
