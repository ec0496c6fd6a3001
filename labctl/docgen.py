"""Protocol parameter tables generated from the declarations, so the reference cannot drift.

`labctl protocols --markdown` prints every registered protocol's table (a plugin's included);
docs/protocols.md keeps each table between `<!-- parameters NAME -->` and `<!-- /parameters -->`,
and a protocol module's documentation (its docstring after the summary line) between
`<!-- module NAME -->` and `<!-- /module -->`, both rewritten in place by
`labctl protocols --update-docs docs/protocols.md` and checked by tests/test_docs.py."""
from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from typing import Any

from .params import Parameter

BLOCK = re.compile(r"<!-- parameters (\w+) -->\n.*?<!-- /parameters -->", re.DOTALL)
MODULE_BLOCK = re.compile(r"<!-- module (\w+) -->\n.*?<!-- /module -->", re.DOTALL)


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _default(p: Parameter) -> str:
    if p.kind == "floats":
        return "[" + ", ".join(_number(v) for v in p.default) + "]"
    if p.kind == "bool":
        return str(p.default).lower()
    if p.kind == "str":
        return f"`{p.default}`" if p.default else "(empty)"
    return _number(p.default)


def _limits(p: Parameter) -> str:
    if p.choices:
        return ", ".join(f"`{c}`" for c in p.choices)
    lo, hi = p.minimum, p.maximum
    if lo is not None and hi is not None:
        return f"{_number(lo)} … {_number(hi)}"
    if lo is not None:
        return f"≥ {_number(lo)}"
    if hi is not None:
        return f"≤ {_number(hi)}"
    return "—"


def parameter_table(parameters: tuple[Parameter, ...]) -> str:
    """The Markdown table of a protocol's parameters, in declaration order."""
    rows = ["| parameter | type | unit | default | limits | station limit | meaning |",
            "|---|---|---|---|---|---|---|"]
    for p in parameters:
        soa = f"`{p.soa}`" if p.soa else "—"
        doc = p.doc.replace("|", "\\|")
        rows.append(f"| `{p.name}` | {p.kind} | {p.unit or '—'} | {_default(p)} | {_limits(p)} | {soa} | {doc} |")
    return "\n".join(rows) + "\n"


def block(name: str, parameters: tuple[Parameter, ...]) -> str:
    return f"<!-- parameters {name} -->\n{parameter_table(parameters)}<!-- /parameters -->"


def module_block(name: str, protocol: Any) -> str:
    """The documentation of the module that defines `protocol`, after its summary line, as a
    text block."""
    doc = sys.modules[type(protocol).__module__].__doc__ or ""
    body = doc.partition("\n")[2].strip("\n")
    return f"<!-- module {name} -->\n```text\n{body}\n```\n<!-- /module -->"


def update_markdown(text: str, protocols: Mapping[str, Any]) -> str:
    """`text` with every parameter and module block regenerated from the protocol it names (a
    block naming an unknown protocol raises KeyError)."""
    text = BLOCK.sub(lambda m: block(m.group(1), protocols[m.group(1)].parameters), text)
    return MODULE_BLOCK.sub(lambda m: module_block(m.group(1), protocols[m.group(1)]), text)
