"""The dbt docs site as an analyst sees it: generated, served and loaded in headless Chromium.

The module builds a small warehouse (a few simulated learners, every seed and model), runs
``dbt docs generate`` as the pipeline's docs step does, serves the target folder on a free
localhost port and opens it in Chromium (Debian's ``chromium``, driven by Playwright; Playwright's
own browser downloads are never used). It checks that the overview page shows the marts catalogue,
that every mart's page lists its columns and its data tests, and that the project's content causes
no console error.

Chromium is required, not optional: without it the module fails with how to install it (`.ci/run`
installs it), since a skipped acceptance test would let the suite pass without the site ever
having been looked at.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from python_jobs.jobs.calibration_plot import draw_calibration_plot
from python_jobs.paths import PROJECT_ROOT
from python_jobs.simulation.simulator import simulate
from python_jobs.warehouse.dbt import DbtSession

pytestmark = pytest.mark.slow

MARTS_DIR = "models/marts/"
CATALOGUE_HEADING = "Marts catalogue"
# Flags that let Chromium run as root in a container with no network but localhost: no sandbox
# (root), no GPU, and none of the background connections (updates, sync, QUIC probes) that the
# closed network would refuse. Playwright adds --headless and a fresh temporary profile.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGE_TIMEOUT_MS = 30_000
# Resource types whose pages show the project's own descriptions (data tests, many and terse, are
# left out), by the manifest section that holds them.
PAGE_TYPES = {
    "nodes": {"model", "seed", "snapshot", "analysis"},
    "sources": {"source"},
    "exposures": {"exposure"},
    "macros": {"macro"},
    "metrics": {"metric"},
    "semantic_models": {"semantic_model"},
    "saved_queries": {"saved_query"},
}
# Short names dbt docs shows in a column's "Data Tests" cell for each generic test; any other
# generic test shows as "+". Relationships tests ("F") are drawn on the referenced model, so they
# are not expected on the page of the model that declares them.
TEST_SHORT_NAMES = {"not_null": "N", "unique": "U", "accepted_values": "A"}
# dbt docs' own index.html (the same file for every project) asks for three URLs that are
# unrendered template text: the sidebar's icons,
# `<use xlink:href="{{ getIcon(item.type, 'on') }}">` (and 'off'), which the browser fetches
# before AngularJS fills them in, and the favicon link
# `${require('./assets/favicons/favicon.ico')}`, which dbt-docs' build left unresolved. Their 404s
# come from dbt, not from this project's content, and are the only local failures ignored.
DBT_DOCS_TEMPLATE_URL = re.compile(r"\{\{.*\}\}|\$\{require\(")


def chromium_path() -> str:
    """Debian's Chromium (or $STUDYIN_CHROMIUM); fails with how to get it when it is missing."""
    path = os.environ.get("STUDYIN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        pytest.fail(
            f"Chromium not found at {path}: the docs-site test needs a real browser. Install "
            "Debian's package (`sudo apt-get install chromium`; `.ci/run` installs it when run as "
            "root) or point STUDYIN_CHROMIUM at a Chromium binary.",
            pytrace=False,
        )
    return path


# ------------------------------------------------------------------------------------ the site


@dataclass(frozen=True)
class DocsSite:
    base_url: str  # http://127.0.0.1:<port>/index.html
    manifest: dict

    def page(self, route: str) -> str:
        return f"{self.base_url}#!/{route}"

    def marts(self) -> dict[str, dict]:
        """Mart models by name, from the manifest (models whose file is under models/marts/)."""
        return {
            node["name"]: node
            for node in self.manifest["nodes"].values()
            if node["resource_type"] == "model" and node["original_file_path"].startswith(MARTS_DIR)
        }


def build_docs(url: str, target: Path) -> None:
    """Seeds and models on a few simulated learners, the reliability diagram, then `dbt docs
    generate` with compiled SQL, as the pipeline's dbt_docs step does on full runs (one dbt parse
    for both commands)."""
    with psycopg.connect(url) as conn:
        simulate(conn, users=8, days=3, seed=16, progress=False)
    dbt = DbtSession(url, target)
    dbt.run(["build", "--exclude-resource-type", "test", "unit_test"])
    draw_calibration_plot(url)  # an asset docs generate copies, as the pipeline's dbt_docs step
    dbt.run(["docs", "generate"])


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def docs_site(database_factory, tmp_path_factory) -> Iterator[DocsSite]:
    target = tmp_path_factory.mktemp("dbt_docs_site")
    build_docs(database_factory("studyin_docs"), target)
    handler = functools.partial(_QuietHandler, directory=str(target))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="docs-site", daemon=True)
    thread.start()
    try:
        manifest = json.loads((target / "manifest.json").read_text())
        yield DocsSite(f"http://127.0.0.1:{server.server_address[1]}/index.html", manifest)
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium, launched before the site is built so that a missing browser fails at once."""
    executable = chromium_path()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def page_title(node: dict) -> str:
    """The title dbt docs shows on a node's page."""
    if node["resource_type"] == "source":
        return f"{node['source_name']}.{node['name']}"
    if node["resource_type"] == "macro":
        return f"{node['package_name']}.{node['name']}"
    if node["resource_type"] in ("exposure", "metric"):
        return node.get("label") or node["name"]
    return node["name"]


class SiteTab:
    """A browser tab on the docs site, in a fresh context (profile) of its own.

    The site is loaded once; later routes are reached by changing the URL's fragment, as a click
    in the site does (dbt docs is a single-page app: no reload, so a page costs milliseconds, not
    the seconds of parsing the manifest again). Requests to anything but the local server are
    refused (the site must work offline) and recorded, as are console errors and uncaught
    exceptions.
    """

    def __init__(self, browser: Browser, site: DocsSite) -> None:
        self.site = site
        self.errors: list[str] = []
        self.blocked: list[str] = []
        self._local = urlsplit(site.base_url).netloc
        self.context = browser.new_context()
        self.context.route("**/*", self._only_local)
        self.page = self.context.new_page()
        self.page.set_default_timeout(PAGE_TIMEOUT_MS)
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        self.page.goto(site.page("overview"))
        self.page.wait_for_load_state("networkidle")  # index.html, manifest and catalog

    def _only_local(self, route, request) -> None:
        if urlsplit(request.url).netloc == self._local:
            route.continue_()
        else:
            self.blocked.append(request.url)
            route.abort()

    def _console(self, message) -> None:
        if message.type == "error":
            self.errors.append(f"{message.text} @ {message.location.get('url', '')}")

    def show(self, route: str) -> Page:
        """Go to ``#!/<route>``; the caller waits for what it reads."""
        self.page.evaluate("route => { window.location.hash = '#!/' + route }", route)
        return self.page

    def show_node(self, node: dict) -> Page:
        """Go to a node's page and wait until its title is drawn."""
        self.show(f"{node['resource_type']}/{node['unique_id']}")
        title = re.compile(f"^{re.escape(page_title(node))}$")
        self.page.locator(".app-title h1 .break", has_text=title).wait_for()
        return self.page

    def project_errors(self) -> list[str]:
        """Console errors, less those of refused external requests and of dbt docs' own
        template URLs (see DBT_DOCS_TEMPLATE_URL)."""
        return [error for error in self.errors if not self._ignored(error)]

    def _ignored(self, error: str) -> bool:
        url = error.rsplit(" @ ", 1)[-1]
        return url in self.blocked or bool(DBT_DOCS_TEMPLATE_URL.search(unquote(url)))

    def close(self) -> None:
        self.context.close()


@pytest.fixture(scope="module")
def tab(browser: Browser, docs_site: DocsSite) -> Iterator[SiteTab]:
    """One tab shared by the content checks."""
    site_tab = SiteTab(browser, docs_site)
    yield site_tab
    site_tab.close()


# ------------------------------------------------------------------------------------- overview


def catalogue_names(page: Page) -> set[str]:
    """The backticked names in the first column of the table under the `Marts catalogue` heading."""
    overview = page.locator("[marked='overview_md']")
    overview.locator("h1").first.wait_for()
    heading = overview.locator("h2", has_text=re.compile(f"^{CATALOGUE_HEADING}$"))
    assert heading.count() == 1, f"the overview has no (single) heading '{CATALOGUE_HEADING}'"
    table = heading.locator("xpath=following-sibling::table[1]")
    return set(table.locator("tbody tr td:first-child code").all_inner_texts())


def test_overview_lists_every_mart_in_the_catalogue(tab: SiteTab, docs_site: DocsSite):
    listed = catalogue_names(tab.show("overview"))
    marts = set(docs_site.marts())
    models = {
        n["name"] for n in docs_site.manifest["nodes"].values() if n["resource_type"] == "model"
    }
    assert len(marts) >= 12, f"expected the project's marts in the manifest, got {sorted(marts)}"
    assert not marts - listed, f"marts missing from the catalogue: {sorted(marts - listed)}"
    assert not listed - models, f"the catalogue names no model: {sorted(listed - models)}"


def test_overview_shows_the_reliability_diagram(tab: SiteTab):
    """The calibration plot is an asset of the site (dbt_project.yml asset-paths), drawn."""
    overview = tab.show("overview").locator("[marked='overview_md']")
    image = overview.locator("img[src='assets/calibration/reliability.png']")
    image.wait_for()
    tab.page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )
    assert image.evaluate("img => img.naturalWidth") >= 400


# ------------------------------------------------------------------------------------ mart pages


def mart_names() -> list[str]:
    """Marts on disk (at collection time, before the build): one page check each."""
    return sorted(path.stem for path in (PROJECT_ROOT / MARTS_DIR).rglob("*.sql"))


def expected_tests(manifest: dict, unique_id: str) -> tuple[dict[str, set[str]], set[str]]:
    """The model's tests per the manifest: short names per column, and names of all its tests."""
    by_column: dict[str, set[str]] = {}
    names = set()
    for child in manifest["child_map"].get(unique_id, []):
        test = manifest["nodes"].get(child, {})
        if test.get("resource_type") != "test":
            continue
        names.add(test["name"])
        generic = (test.get("test_metadata") or {}).get("name")
        column = test.get("column_name")
        if generic and column and test.get("attached_node") == unique_id:
            short = TEST_SHORT_NAMES.get(generic, "F" if generic == "relationships" else "+")
            if short != "F":
                by_column.setdefault(column.lower(), set()).add(short)
    return by_column, names


def shown_columns(page: Page) -> dict[str, set[str]]:
    """The Columns table of a model page: each column's name and the short names of its tests."""
    table = page.locator("column-details table")
    table.locator("tr.column-row").first.wait_for()
    headers = [h.strip() for h in table.locator("thead th").all_text_contents()]
    tests_at = headers.index("Data Tests")
    shown = {}
    for row in table.locator("tr.column-row").all():
        cells = row.locator("td")
        tests = cells.nth(tests_at).locator("span[title]").all_inner_texts()
        shown[cells.nth(0).inner_text().strip().lower()] = {short.strip() for short in tests}
    return shown


def shown_data_tests(page: Page) -> set[str]:
    """The names under Referenced By > Data Tests."""
    references = page.locator("reference-list").first
    references.locator("a", has_text="Data Tests").click()
    return set(references.locator("ul.list-unstyled li a").all_inner_texts())


@pytest.mark.parametrize("mart", mart_names())
def test_mart_page_lists_its_columns_and_tests(tab: SiteTab, docs_site: DocsSite, mart: str):
    node = docs_site.marts().get(mart)
    assert node is not None, f"{mart} is not in the manifest"
    page = tab.show_node(node)
    columns = shown_columns(page)
    by_column, test_names = expected_tests(docs_site.manifest, node["unique_id"])
    assert set(columns) == {c.lower() for c in node["columns"]}, "columns differ from the YAML"
    assert test_names, f"{mart} has no data test"
    for column, shorts in by_column.items():
        assert shorts <= columns[column], f"{mart}.{column} shows {columns[column]}, not {shorts}"
    assert shown_data_tests(page) == test_names


# --------------------------------------------------------------------------------- console errors


def project_pages(manifest: dict) -> list[dict]:
    """Every page of the project's own content (see PAGE_TYPES), none of dbt's own macros."""
    project = manifest["metadata"]["project_name"]
    return [
        node
        for section, types in PAGE_TYPES.items()
        for node in manifest.get(section, {}).values()
        if node["package_name"] == project and node["resource_type"] in types
    ]


# A column's description is drawn as markdown only once its row is opened: open every row.
EXPAND_COLUMNS = "() => document.querySelectorAll('tr.column-row').forEach(row => row.click())"


def test_project_content_causes_no_console_error(browser: Browser, docs_site: DocsSite):
    site_tab = SiteTab(browser, docs_site)  # its own tab: the first load's errors count too
    try:
        pages = project_pages(docs_site.manifest)
        for node in pages:
            site_tab.show_node(node)
            site_tab.page.evaluate(EXPAND_COLUMNS)
        site_tab.show_node(docs_site.marts()["daily_user_stats"])
        site_tab.page.locator("a[title='View Lineage Graph']").click()
        site_tab.page.locator("#graph-viz-wrapper canvas").first.wait_for(state="attached")
        site_tab.page.wait_for_load_state("networkidle")
        errors, blocked = site_tab.project_errors(), site_tab.blocked
    finally:
        site_tab.close()
    assert not errors, f"console errors (external requests refused: {blocked}): {errors}"
