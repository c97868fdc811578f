"""The frame every page shares: set-up, the sidebar, link notices, safe text.

Pages call :func:`page_setup` first; the router (``pages/router.py``) draws the sidebar.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import streamlit as st

from pages.lib import own_models, settings
from saliency_core.models.registry import get_spec
from saliency_core.safety.budget import OverBudgetError
from saliency_core.safety.jobs import JobCancelledError, JobOverrunError

_MARKDOWN_SPECIAL = set("\\`*_{}[]()<>#+-.!|~$:")
_log = logging.getLogger("saliency_studio")


_AUTOLINK = re.compile(r"(?i)(://|www\.|@)")


def escape_markdown(text: str) -> str:
    """Escape user-supplied text (e.g. a file name) so Markdown shows it literally.

    Markdown syntax is backslash-escaped, and the patterns that Streamlit's Markdown
    turns into links by themselves (``http://…``, ``www.…``, ``name@host``) are broken
    with an invisible zero-width space, so no user text becomes a live link.
    """
    text = _AUTOLINK.sub(lambda m: m.group(0)[0] + "\u200b" + m.group(0)[1:], str(text))
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in text)


_BREAK_AFTER = "/\\_-"


def breakable_name(text: str) -> str:
    """A file or model name escaped for Markdown (:func:`escape_markdown`) that wraps
    after ``/``, ``\\``, ``_`` and ``-`` instead of in the middle of a word (an invisible
    zero-width space follows each of them); never inside ``cat.png``."""
    return escape_markdown("".join(ch + "\u200b" if ch in _BREAK_AFTER else ch
                                   for ch in str(text)))


PICKER_CHARS = 24
"""The longest model name the sidebar's picker shows whole at 1400 px (and on a phone)."""


def picker_name(name: str) -> str:
    """A model's name short enough for the sidebar's picker: a registered model's name
    without its note in brackets ("EfficientNet-Lite0 (default, offline)" ->
    "EfficientNet-Lite0"), an own model by its file name, shortened in the middle if
    long. The caption under the picker gives the whole name."""
    own = "Your model: "
    short = name[len(own):] if name.startswith(own) else name.split(" (", 1)[0]
    if len(short) <= PICKER_CHARS:
        return short
    keep = PICKER_CHARS - 1
    return short[:keep - keep // 3] + "…" + short[len(short) - keep // 3:]


@contextmanager
def guarded() -> Iterator[None]:
    """Catch the unexpected at a page's top level: a short message and a reference.

    Work refused by the budget, or stopped for running far beyond its estimate, is
    no error: its message says what happened and what to change.

    The details (type, message, traceback, server paths) go to the server's log under
    that reference, never to the user; ``client.showErrorDetails = "none"`` hides any
    that escape. Streamlit's own stop and rerun signals are not exceptions and pass.
    """
    try:
        yield
    except OverBudgetError as exc:
        st.error(f"**This is too much work for this server.** {escape_markdown(str(exc))}",
                 icon=":material/hourglass_disabled:")
    except JobOverrunError as exc:
        st.error(escape_markdown(str(exc)), icon=":material/hourglass_disabled:")
    except JobCancelledError:
        st.info("The computation was stopped because this page stopped waiting for it; "
                "it starts again when you come back.", icon=":material/replay:")
    except Exception:
        reference = secrets.token_hex(4)
        _log.exception("Unexpected error on a page (reference %s)", reference)
        st.error(f"Something went wrong on this page (reference {reference}). Your settings "
                 "and files are kept: try again, or choose another image, method or model. "
                 "If it keeps happening, give the operator this reference; the details are in "
                 "the server's log.", icon=":material/error:")


PAGES = (
    ("explore.py", "Explore", ":material/visibility:"),
    ("compare.py", "Compare", ":material/grid_view:"),
    ("live.py", "Live", ":material/videocam:"),
    ("audit.py", "Audit", ":material/photo_library:"),
    ("trust.py", "Trust", ":material/verified:"),
    ("how_it_works.py", "How it works", ":material/school:"),
    ("models.py", "Models", ":material/model_training:"),
)
"""Every page: its file (beside the router in ``pages/``), title and icon, in menu order
(the first is the default)."""


def make_navigation():
    """The router's ``st.navigation`` over :data:`PAGES`."""
    return st.navigation([st.Page(path, title=title, icon=icon, default=index == 0)
                          for index, (path, title, icon) in enumerate(PAGES)])


def page_setup() -> None:
    """Call first on every page: the session's settings exist.

    The router (``pages/router.py``) has configured the page and drawn the sidebar;
    it is the main script of every request, deep links included."""
    settings.init_state()


PHONE_WIDTH = 640
_PHONE_CSS = ("<style>" + (Path(__file__).parent / "assets" / "phone.css").read_text(
    encoding="utf-8") + "</style>")
"""Project CSS, read from a file (``assets/phone.css``): the only HTML pages render, and
none of it comes from a visitor (tests/test_style.py checks both)."""


def hide_chart_toolbars_on_phones() -> None:
    """Hide the Plotly toolbar of the page's charts on screens up to :data:`PHONE_WIDTH`.

    On a phone the toolbar shows as soon as a chart is touched and covers the
    panel titles under it; pinching and double-tapping still zoom. Streamlit
    tells Python nothing about the screen, so this is a CSS media query in a
    style-only element (which takes no room on the page).
    """
    st.html(_PHONE_CSS)


ICON = Path(__file__).parent / "assets" / "icon.png"


def configure_page() -> None:
    """Title, a local icon (an icon name such as ``:material/visibility:`` would make
    every browser fetch the favicon from a font CDN) and the wide layout."""
    st.set_page_config(page_title="Saliency Studio", page_icon=str(ICON), layout="wide")


def show_link_notices() -> None:
    """Say plainly what a shared link asked for that this browser cannot show."""
    notices = st.session_state.get("link_notices", [])
    refused = [notice.detail for notice in notices if notice.kind == "param"]
    if refused:
        st.warning("**The link asks for method settings outside what this app allows**, so "
                   "they were not applied:\n\n" + "\n".join(
                       f"- {escape_markdown(line)}" for line in refused),
                   icon=":material/link_off:")
    for notice in notices:
        named = ("" if notice.class_index is None else
                 f" The link named class {notice.class_index}, which is not applied here.")
        if notice.kind == "param":
            continue
        if notice.kind == "class":
            st.warning(f"**{escape_markdown(notice.detail)}**, so it is not applied: the "
                       "image's own top class is shown instead (and no contrast for a "
                       "contrast class).", icon=":material/link_off:")
            continue
        if notice.kind == "photo":
            st.warning(
                "**This link (or page, if you reloaded it) was made from an uploaded photo, "
                "and photos are never part of a link or kept after the page closes.** Its "
                f"other settings are shown on the sample photo instead.{named} Upload the "
                "same photo again to see its map with that class.",
                icon=":material/link_off:")
        else:
            st.warning(
                "**This link names an own model that is not loaded in this browser session** "
                "(own models last only as long as the session that uploaded them). The "
                f"default model is shown instead.{named} Upload the model on the Models page "
                "to use it again.", icon=":material/link_off:")
    if st.session_state.get("link_notices") and st.button("Dismiss", key="dismiss_notices"):
        st.session_state["link_notices"] = []
        st.rerun()


def _model_changed() -> None:
    settings.put("class", None)
    settings.put("contrast", None)


def render_sidebar() -> None:
    """The sidebar every page shares: the model picker and a short explanation."""
    if "pending_model" in st.session_state:  # chosen elsewhere, e.g. after an upload
        settings.put("model", st.session_state.pop("pending_model"))
    with st.sidebar:
        st.markdown("### Model")
        options = own_models.model_options()
        shown = {k: own_models.model_display_name(k) for k in options}  # no state needed later
        short = {k: picker_name(name) for k, name in shown.items()}
        key = settings.bind("model", st.selectbox, options=options,
                            label="Classifier", format_func=short.__getitem__,
                            on_change=_model_changed,
                            help="EfficientNet-Lite0 works offline. The others need their "
                                 "ImageNet weights; your own .keras model can be uploaded. "
                                 "See the Models page.")
        full = f"**{breakable_name(shown[key])}**. " if short[key] != shown[key] else ""
        if key.startswith(settings.CUSTOM_PREFIX):
            entry = own_models.custom_models()[key]
            st.caption(f"{full}{entry['classes']} classes; {escape_markdown(entry['note'])}.")
        else:
            st.caption(full + get_spec(key).summary)
        st.divider()
        st.caption(
            "Saliency Studio shows which pixels a classifier's score depends on: the "
            "gradient of the class score with respect to the image (Simonyan et al. 2013, "
            "[arXiv:1312.6034](https://arxiv.org/abs/1312.6034)).")
