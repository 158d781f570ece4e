"""HTML for tokens and attention: every token string escaped, every visualisation offline.

Two ways to draw activations on text:

- :func:`tokens_html` / :func:`examples_html`: light ``<span>`` markup, shown with ``st.html``. Every
  token goes through :func:`escape_token` (``html.escape`` + visible newlines), so a story containing
  ``<script>`` shows those characters as text.
- :func:`neuron_vis` / :func:`attention_vis`: circuitsvis components, from ``RenderedHTML.local_src``
  (the React bundle inlined; ``str(vis)`` would load it from a CDN), shown with ``st.iframe``.
  circuitsvis' token components write token strings into the page as raw HTML
  (``dangerouslySetInnerHTML``), so every token ``ColoredTokens`` receives is HTML-escaped first
  (:func:`circuitsvis_tokens`); ``AttentionHeads`` draws tokens on a canvas only, so they go in as text. Its props sit in an inline
  ``<script>`` as JSON, where a ``</script>`` would end the script early; :func:`_harden_props`
  rewrites every ``<`` in the props to ``\\u003c`` (the same string to JavaScript). Finally
  :func:`sandboxed` wraps the whole document in an inner ``<iframe sandbox="allow-scripts">``: Streamlit
  gives ``st.iframe`` the sandbox ``allow-same-origin allow-scripts``, which would let a script reach
  ``window.parent.document``; the inner frame has an opaque origin, so even a script that got past the
  escaping cannot touch the app.
- Both views use the same colours and the same symmetric scale: blue = positive, red = negative, the
  strength of a colour is ``|value| / max |value|``, so a tiny negative activation stays pale.

:func:`network_references` lists script/style/image sources that would leave the machine; the tests
and ``tinyinterp app --check`` use it to prove that nothing the app renders loads from the network.
"""

from __future__ import annotations

import html
import math
import re
from typing import Sequence

import numpy as np

POSITIVE_RGB = (30, 100, 230)
"""Blue: positive activations, in the HTML view and in circuitsvis (its own convention)."""
NEGATIVE_RGB = (220, 40, 40)
"""Red: negative activations."""
COLOUR_LEGEND = "blue = positive, red = negative"


def escape_token(token: str) -> str:
    """A token string as safe HTML text; newlines show as ↵ (and break the line)."""
    return html.escape(token, quote=True).replace("\r", "").replace("\n", "↵<br/>")


_MARKDOWN_ACTIVE = re.compile(r"([\\`*\[\]()<>!#|~$&{}])")
"""What turns text into something else in Streamlit's Markdown: images and links (``![]()``, ``[]()``), raw HTML
and entities, code, emphasis, headings, tables, strike-through, LaTeX (``$``), directives (``{}``). Dots,
slashes, colons and underscores stay as they are, so file names read (and match) unchanged; a bare URL shown
as text is at most a link, never a request."""


def md_text(value: object) -> str:
    """A data-file string for a Markdown element (``st.caption``, ``st.warning``, ``st.header``, …) that
    shows as the same text: the characters of :data:`_MARKDOWN_ACTIVE` are backslash-escaped (CommonMark),
    so ``![x](http://…)`` is no image, ``[a](javascript:…)`` no link, ``<img …>`` no tag; newlines become
    spaces (one line stays one line)."""
    text = " ".join(str(value).splitlines())
    return _MARKDOWN_ACTIVE.sub(r"\\\1", text)


def md_code(value: object) -> str:
    """A data-file string as an inline code span (shown verbatim): the fence is longer than any run of
    backticks inside, so the string cannot close it early."""
    text = " ".join(str(value).splitlines())
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _colour(value: float, max_abs: float) -> str:
    if value is None or math.isnan(value) or max_abs <= 0:
        return "transparent"
    alpha = min(abs(value) / max_abs, 1.0) * 0.85
    r, g, b = POSITIVE_RGB if value >= 0 else NEGATIVE_RGB
    return f"rgba({r},{g},{b},{alpha:.3f})"


def tokens_html(tokens: Sequence[str], activations: Sequence[float], max_abs: float | None = None,
                center: int | None = None) -> str:
    """One line of text with each token's background coloured by its activation (hover: the value)."""
    finite = [abs(a) for a in activations if a is not None and not math.isnan(a)]
    max_abs = max_abs if max_abs is not None else (max(finite) if finite else 0.0)
    spans = []
    for i, (tok, act) in enumerate(zip(tokens, activations)):
        value = "n/a" if act is None or math.isnan(act) else f"{act:.3f}"
        border = "border-bottom:2px solid #222;" if i == center else ""
        spans.append(
            f'<span class="tok" title="{html.escape(value)}" style="background:{_colour(act, max_abs)};{border}'
            f'padding:1px 0;border-radius:2px">{escape_token(tok)}</span>'
        )
    return f'<div class="tokens" style="font-family:monospace;white-space:pre-wrap;line-height:1.8">{"".join(spans)}</div>'


def story_html(prompt: str, completion: str) -> str:
    """A prompt (bold) and the model's continuation, both escaped."""
    return (f'<div class="story" style="white-space:pre-wrap"><b>{html.escape(prompt)}</b>'
            f"{html.escape(completion)}</div>")


def examples_html(examples: Sequence[dict]) -> str:
    """The top examples of a neuron, one per row, coloured on a shared scale, top token underlined."""
    finite = [abs(a) for ex in examples for a in ex["activations"] if not math.isnan(a)]
    max_abs = max(finite) if finite else 0.0
    rows = []
    for rank, ex in enumerate(examples, 1):
        label = f"#{rank} &nbsp; act {ex['activation']:.3f} &nbsp; doc {ex['doc']} pos {ex['pos']}"
        rows.append(
            f'<div class="example" style="margin:4px 0"><div style="font-size:0.8em;color:#666">{label}</div>'
            f'{tokens_html(ex["token_strs"], ex["activations"], max_abs, ex["center"])}</div>'
        )
    return "".join(rows)


def bars_html(counts: dict[str, int | float], colour: str = "#4a7bd0") -> str:
    """A small horizontal bar chart in plain HTML (labels escaped, whitespace made visible)."""
    top = max(counts.values(), default=0) or 1
    rows = []
    for label, value in counts.items():
        shown = escape_token(str(label).replace(" ", "␣").replace("\n", "↵"))
        rows.append(
            f'<div class="bar" style="display:flex;align-items:center;gap:6px;margin:1px 0">'
            f'<span style="width:9em;text-align:right;font-family:monospace;overflow:hidden">{shown}</span>'
            f'<span style="background:{colour};height:0.9em;width:{100 * value / top:.1f}%;min-width:1px"></span>'
            f'<span style="font-size:0.8em;color:#555">{value}</span></div>'
        )
    return f'<div class="bars" style="font-size:0.9em">{"".join(rows)}</div>'


def _harden_props(local_src: str) -> str:
    """Escape ``<`` inside the inline ``CircuitsVis.render(...)`` call (the props JSON)."""
    start = local_src.rfind("CircuitsVis.render(")
    end = local_src.rfind("</script>")
    if start < 0 or end < start:
        raise ValueError("unexpected circuitsvis output: no render call found")
    return local_src[:start] + local_src[start:end].replace("<", "\\u003c") + local_src[end:]


def _document(body: str) -> str:
    return f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body style="margin:0">{body}</body></html>'


def sandboxed(document: str) -> str:
    """``document`` inside an ``<iframe sandbox="allow-scripts" srcdoc=…>``: its scripts run in an opaque
    origin and cannot reach the page that embeds it (Streamlit's own iframe is same-origin)."""
    return _document(
        '<iframe sandbox="allow-scripts" referrerpolicy="no-referrer" style="border:0;width:100%;height:100vh" '
        f'srcdoc="{html.escape(document, quote=True)}"></iframe>'
    )


def inner_document(markup: str) -> str:
    """The document inside a :func:`sandboxed` wrapper (for tests and checks)."""
    match = re.search(r'<iframe sandbox="allow-scripts"[^>]*?srcdoc="([^"]*)"', markup)
    if match is None:
        raise ValueError("not a sandboxed document")
    return html.unescape(match.group(1))


def circuitsvis_tokens(tokens: Sequence[str]) -> list[str]:
    """Token strings as circuitsvis must receive them: it inserts them as HTML, so they arrive escaped."""
    return [html.escape(str(t), quote=True) for t in tokens]


def _rgb(rgb: tuple[int, int, int]) -> str:
    return f"rgb({rgb[0]}, {rgb[1]}, {rgb[2]})"


def neuron_vis(examples: Sequence[dict], layer: int, neuron: int) -> str:
    """circuitsvis ``ColoredTokens`` of the top examples (one line each), offline and sandboxed.

    ``ColoredTokens`` takes the colours and the scale (``TextNeuronActivations`` takes neither and
    scales negatives by their own minimum, so a tiny negative looked as strong as the peak): the scale
    is symmetric, ``±max |activation|`` over all examples, with the HTML view's colours.
    """
    from circuitsvis.tokens import colored_tokens

    tokens: list[str] = []
    values: list[float] = []
    for i, ex in enumerate(examples):
        acts = np.nan_to_num(np.asarray(ex["activations"], dtype=np.float64))
        tokens += [f"#{i + 1} "] + circuitsvis_tokens(ex["token_strs"]) + ["\n"]
        values += [0.0] + acts.tolist() + [0.0]
    max_abs = float(max((abs(v) for v in values), default=0.0)) or 1.0
    vis = colored_tokens(tokens=tokens, values=values, min_value=-max_abs, max_value=max_abs,
                         negative_color=_rgb(NEGATIVE_RGB), positive_color=_rgb(POSITIVE_RGB))
    return sandboxed(_document(f'<div style="font-size:0.8em;color:#666">L{layer} N{neuron}: '
                               f'{COLOUR_LEGEND}</div>' + _harden_props(vis.local_src)))


def attention_vis(tokens: Sequence[str], patterns: np.ndarray, head_names: Sequence[str]) -> str:
    """circuitsvis ``attention_heads`` of ``patterns`` (heads, T, T), offline and sandboxed.

    Unlike ``ColoredTokens``, ``AttentionHeads`` draws tokens only as chart.js axis labels and tooltips
    (canvas text) and head names as React text, never as HTML: escaped strings would show as ``&lt;``
    there, so the tokens go in as they are (the props are still hardened, and the frame sandboxed).
    """
    from circuitsvis.attention import attention_heads

    vis = attention_heads(attention=np.asarray(patterns, dtype=np.float32), tokens=list(tokens),
                          attention_head_names=list(head_names))
    return sandboxed(_document(_harden_props(vis.local_src)))


_SOURCE_ATTR = re.compile(r"""<(script|link|img|iframe|source|video|audio)\b[^>]*?\b(src|href)\s*=\s*["']?([^"'\s>]+)""", re.I)
_CSS_IMPORT = re.compile(r"""@import\s+(?:url\()?["']?(https?:)?//""", re.I)
_CDNS = ("unpkg.com", "cdn.jsdelivr", "cdnjs.", "googleapis.com")


def network_references(markup: str) -> list[str]:
    """Every tag source that would load over the network, plus any CDN host named in the markup
    (and inside a :func:`sandboxed` document's ``srcdoc``, which is escaped in the outer markup)."""
    if 'sandbox="allow-scripts"' in markup:
        try:
            markup = markup + inner_document(markup)
        except ValueError:
            pass
    found = [m.group(3) for m in _SOURCE_ATTR.finditer(markup) if re.match(r"(https?:)?//", m.group(3), re.I)]
    found += [m.group(0) for m in _CSS_IMPORT.finditer(markup)]
    found += [cdn for cdn in _CDNS if cdn in markup]
    return found
