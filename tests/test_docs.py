"""The documentation site builds with --strict (broken links, missing pages and anchors fail),
its reference pages are generated from the code so they cannot go stale, it loads nothing from
the internet, and the shipped config.yaml stays in step with the validators."""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.config import fields, load_config, reference

REPO = Path(__file__).resolve().parents[1]


def _hooks():
    """docs/hooks.py, the MkDocs hook that generates the reference pages (not a package module)."""
    spec = importlib.util.spec_from_file_location("docs_hooks", REPO / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site as CI builds it: `mkdocs build --strict` from the checkout into a temporary folder."""
    for module in ("mkdocs", "material"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed: pip install -e '.[docs]' (scripts/setup.sh installs the docs extra)")
    out = tmp_path_factory.mktemp("site")
    # NO_MKDOCS_2_WARNING: Material prints a banner about MkDocs 2 on every build; it is not ours to act on.
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(REPO / "mkdocs.yml"),
                           "--site-dir", str(out)], capture_output=True, text=True, timeout=600, cwd=REPO,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def test_site_builds_strict_with_every_page(site):
    for page in ("index.html", "configure/driver.html", "benchmarks/index.html", "benchmarks/history.html",
                 "reference/config.html", "reference/payloads.html", "reference/cli.html",
                 "models/cards/EMOTION_FERPLUS_CARD.html", "install/systemd.html"):
        assert (site / page).is_file(), page


def test_generated_config_reference_lists_every_key_the_config_accepts(site):
    # The page is made from daemon.config.fields() at build time; reference() is what the
    # validator accepts (python -m daemon.config): every one of its keys must be on the page.
    keys = [key for key, _, _ in reference()]
    assert len(keys) > 100
    markdown = _hooks().config_reference()
    assert [k for k in keys if f"| `{k}` |" not in markdown] == []
    page = (site / "reference" / "config.html").read_text(encoding="utf-8")
    assert [k for k in keys if f"<code>{html.escape(k, quote=False)}</code>" not in page] == []


def test_config_reference_shows_type_default_constraint_and_title():
    markdown = _hooks().config_reference()
    row = next(line for line in markdown.splitlines() if line.startswith("| `http.port` |"))
    assert row == "| `http.port` | integer | `8080` | 1 ≤ x ≤ 65535 | TCP port |"
    row = next(line for line in markdown.splitlines() if line.startswith("| `zones.<name>.polygon` |"))
    assert "| `required` |" in row and "0.0 ≤ x ≤ 1.0" in row
    # defaults as a config file writes them
    assert "| `source.loop` | boolean | `false` |" in markdown and "| `source.uri` | string | `'0'` |" in markdown


def test_a_config_key_without_a_title_fails_the_build(monkeypatch):
    import daemon.config

    PluginError = pytest.importorskip("mkdocs.exceptions").PluginError
    hooks = _hooks()
    rows = fields()
    key, field = rows[0]
    untitled = field.__class__.merge_field_infos(field, title=None)
    monkeypatch.setattr(daemon.config, "fields", lambda *args: [(key, untitled), *rows[1:]])
    with pytest.raises(hooks.MissingTitle, match=re.escape(key)):
        hooks.config_reference()
    with pytest.raises(PluginError, match=re.escape(key)):  # what stops `mkdocs build`
        hooks.on_files([], config=None)


def test_generated_payload_reference_lists_every_schema_field(site):
    from daemon.schemas import NAMES, load

    markdown = _hooks().payload_reference()
    for name in NAMES:
        schema = load(name)
        assert f"## {name}" in markdown
        missing = [p for p in schema["properties"] if f"| `{p}` |" not in markdown]
        assert missing == [], name
    assert "| `primary.gaze.openness` |" in markdown  # a face signal's value, from the signal registry
    assert "| `details.dwell_s.p90` |" in markdown  # the visitors details, through $ref and if/then
    assert (site / "reference" / "payloads.html").is_file()


def test_generated_cli_reference_lists_every_command_and_option():
    import argparse

    from daemon.cli import build_parser

    markdown = _hooks().cli_reference()
    subs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subs.choices.items():
        assert f"## emotiond {name}" in markdown
        for action in sub._actions:
            for flag in action.option_strings:
                if action.help != argparse.SUPPRESS:
                    assert flag in markdown, (name, flag)


def test_the_site_loads_nothing_from_the_internet(site):
    # Read on a device or a laptop with no internet: no web fonts, no CDN scripts or styles.
    pattern = re.compile(r"fonts\.googleapis|fonts\.gstatic|https://cdn|unpkg\.com|<script[^>]+src=\"https?://"
                         r"|<link[^>]+rel=\"stylesheet\"[^>]+href=\"https?://|@import url\(\"?https?://")
    found = [f"{p.relative_to(site)}: {m.group(0)}" for p in sorted(site.rglob("*")) if p.suffix in (".html", ".css")
             for m in pattern.finditer(p.read_text(encoding="utf-8", errors="replace"))]
    assert found == []


def test_readme_is_short_and_links_only_into_the_docs():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode()) <= 12 * 1024
    assert "scripts/demo.sh" in readme and "scripts/test.sh" in readme
    # It is also the site's home page (docs/hooks.py rewrites docs/ links): a link elsewhere
    # would break there, and one to a generated page would break for a reader of the repository.
    links = re.findall(r"\]\(([^)#]+)", readme)
    assert links and [link for link in links if not link.startswith("docs/")] == []
    assert [link for link in links if not (REPO / link).is_file()] == []


def test_every_config_key_has_a_title():
    assert [key for key, _, title in reference() if not title] == []


def test_shipped_config_is_valid_and_names_the_shipped_models():
    cfg = load_config(REPO / "config.yaml")
    assert cfg.classifier.model == REPO / "models" / "emotion_wild.tflite"
    assert cfg.eyes.model == REPO / "models" / "eye_state.tflite"
    assert {r.type for r in cfg.rules} >= {"driver_fatigue", "driver_absent"}


def test_relative_file_sources_are_relative_to_the_config_file(tmp_path):
    from daemon.config import parse_config

    cfg = parse_config({"source": {"uri": "clips/a.mp4"}, "classifier": {"model": str(REPO / "models/emotion_wild.tflite")},
                        "eyes": {"enabled": False}}, base_dir=tmp_path)
    assert cfg.source.uri == str(tmp_path / "clips/a.mp4")
    for uri in ("0", "/dev/video2", "rtsp://cam/stream", "/abs/clip.mp4"):
        cfg = parse_config({"source": {"uri": uri}, "eyes": {"enabled": False},
                            "classifier": {"model": str(REPO / "models/emotion_wild.tflite")}}, base_dir=tmp_path)
        assert cfg.source.uri == uri
