"""The examples in docs/ and xml_templates/ are valid: what users copy must work."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from vzlibvirt.config import parse_config
from vzlibvirt.domain_xml import parse_domain
from vzlibvirt.plan import describe_plan

REPO = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"```(xml|toml)\n(.*?)```", re.S)


def _blocks(kind: str) -> list[tuple[str, str]]:
    out = []
    for doc in sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md"]:
        for n, (lang, body) in enumerate(BLOCK.findall(doc.read_text())):
            if lang == kind:
                out.append((f"{doc.name}#{n}", body))
    return out


DOMAIN_BLOCKS = [(name, body) for name, body in _blocks("xml") if body.lstrip().startswith(
    "<domain")]
TEMPLATES = [p for p in sorted((REPO / "xml_templates").glob("*.xml"))
             if b"<domain" in p.read_bytes()]


def test_the_docs_have_examples():
    assert len(DOMAIN_BLOCKS) >= 3 and len(_blocks("toml")) >= 2 and len(TEMPLATES) >= 2


@pytest.mark.parametrize("name,body", DOMAIN_BLOCKS, ids=[n for n, _ in DOMAIN_BLOCKS])
def test_domain_examples_parse(name, body):
    domain = parse_domain(body.encode())
    assert domain.managed_interfaces, f"{name} manages no interface"
    assert describe_plan(domain, parse_config({}))


@pytest.mark.parametrize("path", TEMPLATES, ids=[p.name for p in TEMPLATES])
def test_templates_parse(path):
    assert parse_domain(path.read_bytes()).managed_interfaces


@pytest.mark.parametrize("name,body", _blocks("toml"), ids=[n for n, _ in _blocks("toml")])
def test_config_examples_parse(name, body):
    parse_config(tomllib.loads(body))
