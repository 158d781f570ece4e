"""The one real-browser test: ``streamlit run`` headless + Debian's chromium driven by Playwright.

Visits every page of the app over the test runs root, asserts text that only a fully rendered page shows
(inside the circuitsvis iframe too, which proves the inlined bundle runs offline), saves a screenshot of
each under ``test-output/screenshots/``, times a second (cached) visit of each page, checks that a
``<script>`` typed into a prompt stays text, and that the browser never requested anything off this machine.

The root also holds ``hostile``: a run whose tokenizer has tokens such as ``<img/src="x"/onerror=alert(4)>``
(a tokenizer from a downloaded model folder is untrusted input). Every view that shows tokens (neurons,
both the HTML and the circuitsvis view; heads; generate) is opened on it, and the test checks that no such
token became an element, no script ran, and that the circuitsvis frame cannot reach its parent page.

Every data file the pages show (comparison, explanations, grades, emergence, config) also
carries Markdown images, raw ``<img>`` tags and ``javascript:`` links pointing at a remote address
(:mod:`tests.support.hostile_data`), every page is also opened with such a ``?run=`` value, and the test
asserts that the browser made no request that leaves 127.0.0.1 (``page.on("request")``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from apps.cli import streamlit_command, streamlit_env, wait_healthy
from apps.views import PAGE_NAMES, PAGES

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
CACHED_LOAD_LIMIT_S = 2.0
"""Switching to a page in the app (sidebar link) once its data is cached."""
# Sanity bounds only (measured 2-3 s / 1-2.5 s on a busy 2-core machine); they are printed for the record.
CIRCUITSVIS_LIMIT_S = 8.0
"""The heads page's circuitsvis iframe finished drawing (it renders after the page's own elements)."""
RELOAD_LIMIT_S = 8.0
"""A full browser reload of a page URL: also re-downloads and starts Streamlit's own frontend."""
# page -> text that appears only once the page has run to its end
EXPECTED = {  # every page of apps.views.PAGES, in menu order
    "runs": "Training curves",
    "neurons": "Run the neuron on your own text",
    "neuron_table": "frequency: share of tokens where the neuron is active",
    "dictionaries": "curves from each dictionary's train_log.jsonl",
    "features": "Run the feature on your own text",
    "feature_table": "L0 share: its share of all active",
    "heads": "Distance profile",
    "emergence": "Saved states: log-spaced snapshots",
    "generate": "Story 2",
    "compare": "Mean purity per layer",
    "grades": "Age groups the grader assigned",
    "scaling": "No scaling sweep",  # the test root has no sweep; the scaling page's owner may put one in
    "attribution": "Computing a graph needs one transcoder per layer",  # the test root: no graph, one transcoder
}
DEFAULT_PAGE = PAGE_NAMES[0]
LOCAL_PREFIXES = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:")
HOSTILE_TOKENS = ('<img/src="x"/onerror=alert(4)>', "</script>", """"'><svg/onload=alert(5)>""", "<b>bold</b>")
HOSTILE_TEXT = "Lily saw " + " a ".join(HOSTILE_TOKENS) + " ball."
# After escaping, none of these may exist as elements in any frame.
HOSTILE_SELECTORS = ('img[src="x"]', "svg[onload]", "b:text-is('bold')", 'img[src*="203.0.113.9"]', 'a[href^="javascript:"]',
                     "img[onerror]")
PARENT_PROBE = "() => { try { return 'reached:' + window.parent.document.title } catch (e) { return 'blocked' } }"


def _hostile_run(root: Path) -> tuple[int, int]:
    """``root/hostile``: a random test-tiny model whose tokenizer has HOSTILE_TOKENS as single tokens,
    analysed on stories full of them; returns a (layer, neuron) whose top examples show them."""
    import tokenizers
    import torch

    from tests.support.app_pages import app_stories
    from tinyinterp.runs import rundir
    from tinyinterp.data.corpus import tokenize_corpus
    from tinyinterp.interp import HeadConfig, NeuronIndexConfig, analyze_heads, build_neuron_index, neuron_purity
    from tinyinterp.models.transformer import HookedTransformer
    from tinyinterp.data.tokenizer import Tokenizer
    from tinyinterp.models.zoo import preset_config

    stories = [f"{s} {HOSTILE_TOKENS[i % len(HOSTILE_TOKENS)]} {s}" for i, s in enumerate(app_stories(40, seed=3))]
    hf = tokenizers.Tokenizer.from_str(Tokenizer.train_bpe(stories, vocab_size=300, progress=False).hf.to_str())
    hf.add_tokens([tokenizers.AddedToken(t, normalized=False) for t in HOSTILE_TOKENS])
    tokenizer = Tokenizer(hf)
    assert all(len(tokenizer.encode(t)) == 1 for t in HOSTILE_TOKENS)
    corpus = tokenize_corpus(stories, tokenizer, root / "hostile_corpus", progress=False)
    torch.manual_seed(0)
    model = HookedTransformer(preset_config("test-tiny", d_vocab=tokenizer.vocab_size), tokenizer=tokenizer).eval()
    run = rundir.save_run(root / "hostile", model, tokenizer, {"train": None})
    out = run / rundir.ANALYSIS_DIR
    index = build_neuron_index(model, corpus, out / "neurons", NeuronIndexConfig(k=8, seq_len=64), progress=False)
    neuron_purity(index, tokenizer, corpus).save(out / "neurons")
    analyze_heads(model, corpus, HeadConfig(n_samples=16, seq_len=32), progress=False).save(out / "heads")
    _hostile_graph(run)
    for layer in range(index.n_layers):
        for neuron in range(index.d_mlp):
            shown = {t for ex in index.top_examples(layer, neuron, k=8, context=8) for t in ex.token_strs}
            if HOSTILE_TOKENS[0] in shown:
                return layer, neuron
    raise AssertionError("no neuron shows the hostile token among its top examples")


def _hostile_graph(run: Path) -> None:
    """A saved attribution graph of ``run`` whose tokens, logit tokens, prompt and explanation are HOSTILE_TOKENS."""
    from tests.support.graph_fixtures import small_graph, write_graph

    tokens = ["<|endoftext|>", *HOSTILE_TOKENS[:3]]
    write_graph(run / "analysis" / "graphs" / "hostile.json",
                small_graph(tokens, (HOSTILE_TOKENS[3], HOSTILE_TOKENS[0]), prompt=HOSTILE_TEXT, clerp=HOSTILE_TOKENS[2]))


def _longest_category_neuron(root: Path) -> tuple[int, int]:
    """A demo neuron whose majority category has the longest name (the one most likely to be cut off)."""
    from tinyinterp.interp import PurityResult

    frame = PurityResult.load(root / "demo" / "analysis" / "neurons").to_frame()
    row = frame.loc[frame.category.str.len().idxmax()]
    return int(row.layer), int(row.neuron)


@pytest.fixture(scope="module")
def browser_root(runs_root, tmp_path_factory):
    """The session's runs root plus the hostile run (a copy: the other app tests list exactly two runs)."""
    import torch

    root = tmp_path_factory.mktemp("browser") / "runs"
    shutil.copytree(runs_root, root, symlinks=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        hostile = _hostile_run(root)
        from tests.support.app_depth import add_emergence, add_explanations
        from tinyinterp.data.corpus import TokenizedCorpus

        add_explanations(root / "demo")  # the neuron table's scores, the neuron page's explanation
        add_emergence(root / "demo", TokenizedCorpus.open(root / "corpus"))  # the Emergence page's curves
        from tests.support.hostile_data import add_hostile_strings

        add_hostile_strings(root)  # Markdown images / HTML / javascript: links in every data file shown
    finally:
        torch.set_num_threads(threads)
    return root, hostile, _longest_category_neuron(root)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(browser_root, tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("streamlit") / "server.log"
    env = streamlit_env(browser_root[0]) | {"OMP_NUM_THREADS": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen(streamlit_command(port), env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        if not wait_healthy("127.0.0.1", port, timeout=120, process=proc):
            pytest.fail(f"streamlit did not become healthy on port {port}:\n{log.read_text()[-3000:]}")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_rendered(page, name: str, timeout_ms: int = 90_000) -> None:
    """Wait for the page's last text (every Streamlit element of the page is drawn by then)."""
    page.get_by_text(EXPECTED[name], exact=False).first.wait_for(state="visible", timeout=timeout_ms)


def _wait_circuitsvis(page, timeout_ms: int = 90_000) -> None:
    """Wait until the circuitsvis bundle has run inside its iframe (from the inlined source) and drawn."""
    frame = page.frame_locator("iframe").first.frame_locator("iframe").first  # st.iframe > sandboxed frame
    frame.get_by_text("Head Selector", exact=False).first.wait_for(state="visible", timeout=timeout_ms)


def _inner_frames(page) -> list:
    """The sandboxed circuitsvis frames (a frame inside Streamlit's st.iframe)."""
    return [f for f in page.frames if f.parent_frame is not None and f.parent_frame.parent_frame is not None]


def _assert_tokens_stay_text(page, where: str) -> None:
    """No hostile token became an element in any frame, and no circuitsvis frame reaches its parent."""
    for frame in page.frames:
        for selector in HOSTILE_SELECTORS:
            assert frame.locator(selector).count() == 0, f"{where}: {selector} became an element in {frame.url}"
    for frame in _inner_frames(page):
        assert frame.evaluate(PARENT_PROBE) == "blocked", f"{where}: the circuitsvis frame reached its parent"
        assert frame.evaluate("() => window.origin") == "null"  # opaque origin: sandbox without allow-same-origin


def _truncated_metric_values(page) -> list[str]:
    return page.evaluate("""() => [...document.querySelectorAll('[data-testid="stMetricValue"], [data-testid="stMetricValue"] *')]
        .filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent)""")


def _hostile_views(page, server: str, hostile: tuple[int, int]) -> None:
    """Neurons (HTML + circuitsvis), heads and generate on the run with the hostile tokenizer."""
    layer, neuron = hostile
    page.goto(f"{server}/neurons?run=hostile&layer={layer}&neuron={neuron}")
    _wait_rendered(page, "neurons")
    page.locator(".example").get_by_text(HOSTILE_TOKENS[0], exact=True).first.wait_for(state="visible")
    _assert_tokens_stay_text(page, "neurons, HTML view")
    page.get_by_text("interactive view (circuitsvis)").click()
    inner = page.frame_locator("iframe").first.frame_locator("iframe").first
    inner.get_by_text(HOSTILE_TOKENS[0], exact=True).first.wait_for(state="visible", timeout=60_000)
    _assert_tokens_stay_text(page, "neurons, circuitsvis view")
    page.screenshot(path=str(SHOTS / "hostile_neurons.png"), full_page=True)
    page.goto(f"{server}/neuron_table?run=hostile")
    _wait_rendered(page, "neuron_table")
    _assert_tokens_stay_text(page, "neuron table")
    page.goto(f"{server}/heads?run=hostile")
    _wait_rendered(page, "heads")
    page.get_by_label("Text", exact=True).fill(HOSTILE_TEXT)
    page.get_by_label("Text", exact=True).press("Control+Enter")
    _wait_circuitsvis(page)
    # AttentionHeads draws tokens on a canvas: wait until its props hold the hostile text.
    page.wait_for_function("""() => [...document.querySelectorAll('iframe')].some(f => {
        try { return f.contentDocument.body.innerHTML.includes('onerror=alert(4)') } catch (e) { return false } })""",
                           timeout=60_000)
    _assert_tokens_stay_text(page, "heads")
    page.screenshot(path=str(SHOTS / "hostile_heads.png"), full_page=True)
    page.goto(f"{server}/attribution?run=hostile")  # a saved graph whose tokens, logits and explanation are HTML
    page.get_by_text("Feature nodes", exact=False).first.wait_for(state="visible", timeout=60_000)
    page.locator(".vega-embed svg g.mark-symbol path").first.wait_for(state="attached", timeout=60_000)  # drawn
    _assert_tokens_stay_text(page, "attribution")
    page.screenshot(path=str(SHOTS / "hostile_attribution.png"), full_page=True)
    page.goto(f"{server}/generate?run=hostile")
    _wait_rendered(page, "generate")
    page.get_by_text("colour the stories by a neuron's activation").click()  # reruns the page: before the form
    page.get_by_text("coloured by L0 N0", exact=False).first.wait_for(state="visible", timeout=60_000)
    page.get_by_label("Prompt").fill(HOSTILE_TEXT)
    page.get_by_role("button", name="Generate").click()
    page.locator(".tokens").get_by_text(HOSTILE_TOKENS[0], exact=True).first.wait_for(state="visible", timeout=60_000)
    _assert_tokens_stay_text(page, "generate")
    page.screenshot(path=str(SHOTS / "hostile_generate.png"), full_page=True)


def _hostile_queries(page, server: str) -> None:
    """Every page with a ``?run=`` / ``?layer=`` value that is a Markdown image: refused, shown as text."""
    from urllib.parse import quote

    from tests.support.hostile_data import HOSTILE_QUERY

    for name in EXPECTED:
        value = quote(HOSTILE_QUERY)
        page.goto(f"{server}/{'' if name == DEFAULT_PAGE else name}?run={value}&layer={value}&head={value}")
        page.get_by_text("query.png", exact=False).first.wait_for(state="visible", timeout=60_000)
        _assert_tokens_stay_text(page, f"{name} with a hostile ?run=")


def _click_row(page, row: int) -> None:
    """Click the selection marker of a data grid's row (the grid is a canvas: by position)."""
    box = page.locator('[data-testid="stDataFrame"]').first.bounding_box()
    page.mouse.click(box["x"] + 12, box["y"] + 35 * (row + 1) + 17)  # 35 px rows, the header first


def _row_clicks_open_items(page, server: str) -> None:
    """A row clicked in the neuron table opens that neuron's page (same run), one in the feature table that
    feature's page; one in the heads table, that head."""
    page.goto(f"{server}/neuron_table?run=demo")
    _wait_rendered(page, "neuron_table")
    _click_row(page, 0)
    page.wait_for_url("**/neurons?**", timeout=30_000)
    _wait_rendered(page, "neurons")
    assert "run=demo" in page.url and "layer=" in page.url and "neuron=" in page.url, page.url
    page.goto(f"{server}/feature_table?run=demo")  # a dictionary's feature table: a row opens that feature
    _wait_rendered(page, "feature_table")
    _click_row(page, 0)
    page.wait_for_url("**/features?**", timeout=30_000)
    _wait_rendered(page, "features")
    assert "run=demo" in page.url and "dict=" in page.url and "feature=" in page.url, page.url
    page.goto(f"{server}/heads?run=demo")
    _wait_rendered(page, "heads")
    _click_row(page, 2)  # sorted by layer: L0H2
    page.wait_for_url("**head=2**", timeout=30_000)
    page.locator('[data-testid="stMetricValue"]').get_by_text("L0H2", exact=True).wait_for(timeout=30_000)


def _visit(page, url: str, name: str) -> float:
    start = time.perf_counter()
    page.goto(url)
    _wait_rendered(page, name)
    return time.perf_counter() - start


def test_every_page_in_chromium(server, browser_root):
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not installed; `make browser` (apt-get install chromium) enables this test")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    SHOTS.mkdir(parents=True, exist_ok=True)
    requests, dialogs, timings = [], [], {}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1800})
            page.on("request", lambda r: requests.append(r.url))
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            for name in EXPECTED:
                url = f"{server}/{'' if name == DEFAULT_PAGE else name}?run=demo"  # the default page lives at /
                first = _visit(page, url, name)
                if name == "heads":
                    _wait_circuitsvis(page)
                if name == "neurons":
                    page.get_by_text("#1", exact=False).first.wait_for(state="visible")
                page.wait_for_timeout(300)  # let charts finish drawing before the screenshot
                page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
                timings[name] = [first, _visit(page, url, name)]
            nav = page.get_by_test_id("stSidebarNav")
            switches: dict[str, list[float]] = {}
            for _ in range(3):  # cached in-app switches, best of three (CI machines are shared and noisy)
                for name, title in [(n, t) for n, t in PAGES[::-1] if n in EXPECTED]:
                    page.wait_for_timeout(300)  # start each timing from an idle browser
                    start = time.perf_counter()
                    nav.get_by_role("link", name=title, exact=True).click()
                    _wait_rendered(page, name, timeout_ms=30_000)
                    switches.setdefault(name, []).append(time.perf_counter() - start)
                    if name == "heads":
                        _wait_circuitsvis(page, timeout_ms=30_000)
                        switches.setdefault("heads+circuitsvis", []).append(time.perf_counter() - start)
            for name, times in switches.items():
                timings.setdefault(name, [float("nan"), float("nan")]).append(min(times))
            # A prompt with a script tag is shown as text and never runs.
            page.goto(f"{server}/generate?run=demo")
            page.get_by_text("Story 1").first.wait_for(state="visible", timeout=60_000)
            prompt = "<script>alert(1)</script> Lily"
            page.get_by_label("Prompt").fill(prompt)
            page.get_by_role("button", name="Generate").click()
            page.locator(".story b", has_text=prompt).first.wait_for(state="visible", timeout=60_000)
            page.screenshot(path=str(SHOTS / "generate_script_prompt.png"), full_page=True)
            _hostile_views(page, server, browser_root[1])
            _hostile_queries(page, server)
            _row_clicks_open_items(page, server)
            layer, neuron = browser_root[2]  # the longest category name fits its metric
            page.goto(f"{server}/neurons?run=demo&layer={layer}&neuron={neuron}")
            _wait_rendered(page, "neurons")
            page.get_by_text("majority").first.wait_for(state="visible")
            truncated = _truncated_metric_values(page)
            pwned = page.evaluate("() => [document.title, window.__pwned === undefined]")
        finally:
            browser.close()
    print("\npage load times in s (first visit / cached reload of the URL / cached switch in the app): "
          + ", ".join(f"{n} {a:.2f}/{b:.2f}/{c:.2f}" for n, (a, b, c) in timings.items()))
    assert not dialogs, f"a script ran in the page: {dialogs}"
    assert pwned[1], "a hostile token wrote into the app's window"
    assert not truncated, f"metric values cut off on the neurons page: {truncated}"
    off_machine = sorted({u for u in requests if not u.startswith(LOCAL_PREFIXES)})
    assert not off_machine, f"the browser requested resources off this machine: {off_machine[:5]}"
    slow = {n: round(c, 2) for n, (_, _, c) in timings.items() if n in EXPECTED and c > CACHED_LOAD_LIMIT_S}
    assert not slow, f"cached page switches over {CACHED_LOAD_LIMIT_S}s: {slow}"
    # The interactive attention view parses circuitsvis' 1.3 MB inlined bundle in its own iframe after the page.
    assert timings["heads+circuitsvis"][2] < CIRCUITSVIS_LIMIT_S, timings["heads+circuitsvis"]
    slow = {n: round(b, 2) for n, (_, b, _) in timings.items() if n in EXPECTED and b > RELOAD_LIMIT_S}
    assert not slow, f"cached page reloads over {RELOAD_LIMIT_S}s: {slow}"
    assert tuple(EXPECTED) == PAGE_NAMES
    for name in EXPECTED:
        assert (SHOTS / f"{name}.png").stat().st_size > 10_000
