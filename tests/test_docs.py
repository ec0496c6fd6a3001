"""The docs cannot silently fall behind the code: every registered protocol has a section in
docs/protocols.md naming each of its parameters, its parameter table is the one generated from the
declarations, and docs/instruments.md names every driver."""
import re
from pathlib import Path

import pytest
from labctl.instruments import DRIVERS

from labctl.cli import main
from labctl.docgen import update_markdown
from labctl.registry import PROTOCOLS

DOCS = Path(__file__).resolve().parent.parent / "docs"
HEADING = re.compile(r"^## `(\w+)`", re.MULTILINE)


def protocol_sections() -> dict[str, str]:
    """Protocol name -> text of its `## `name` ...` section (up to the next level-2 heading)."""
    text = (DOCS / "protocols.md").read_text(encoding="utf-8")
    starts = [m.start() for m in re.finditer(r"^## ", text, re.MULTILINE)] + [len(text)]
    sections = {}
    for start, end in zip(starts, starts[1:]):
        match = HEADING.match(text, start)
        if match:
            assert match.group(1) not in sections, f"two sections for protocol {match.group(1)!r}"
            sections[match.group(1)] = text[start:end]
    return sections


def test_every_documented_protocol_is_registered():
    stale = sorted(set(protocol_sections()) - set(PROTOCOLS))
    assert not stale, f"docs/protocols.md documents unregistered protocols: {stale}"


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_protocol_section_names_every_parameter(name):
    sections = protocol_sections()
    assert name in sections, f"docs/protocols.md has no section heading '## `{name}` ...'"
    missing = [p.name for p in PROTOCOLS[name].parameters if f"`{p.name}`" not in sections[name]]
    assert not missing, f"docs/protocols.md section {name!r} does not mention parameters {missing}"


def test_instruments_doc_names_every_driver():
    text = (DOCS / "instruments.md").read_text(encoding="utf-8")
    missing = sorted(name for name in DRIVERS if f"`{name}`" not in text)
    assert not missing, f"docs/instruments.md does not name drivers {missing}"


def test_parameter_tables_are_generated_from_the_declarations():
    text = (DOCS / "protocols.md").read_text(encoding="utf-8")
    assert text.count("<!-- parameters ") == len(PROTOCOLS)
    assert update_markdown(text, PROTOCOLS) == text, "run: labctl protocols --update-docs docs/protocols.md"


def test_module_documentation_blocks_are_the_modules_docstrings():
    text = update_markdown("<!-- module train -->\nstale\n<!-- /module -->", PROTOCOLS)
    assert "stale" not in text
    assert "AGAD" in text and "Task and model" in text and not text.count("in-situ training of a small")


def test_update_docs_rewrites_a_stale_table(tmp_path, capsys):
    doc = tmp_path / "p.md"
    doc.write_text("# x\n\n<!-- parameters read_map -->\n| stale |\n<!-- /parameters -->\n", encoding="utf-8")
    assert main(["protocols", "--update-docs", str(doc)]) == 0
    text = doc.read_text(encoding="utf-8")
    assert "| stale |" not in text and all(f"| `{p.name}` |" in text for p in PROTOCOLS["read_map"].parameters)
    assert main(["protocols", "--update-docs", str(doc)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("up to date")
    doc.write_text("<!-- parameters no_such -->\n<!-- /parameters -->\n", encoding="utf-8")
    assert main(["protocols", "--update-docs", str(doc)]) == 2
