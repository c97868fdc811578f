"""Every user setting, its default, its URL form, and the widgets bound to it.

One place defines each setting (:data:`SETTINGS`, plus one setting per method
parameter derived from :data:`saliency_core.methods.METHODS`). The value lives in
``st.session_state["prefs"]``, independent of whether its widget is drawn in a
run: a run that stops early (no image yet) or another page never resets it.

Why not just widget keys: Streamlit forgets a widget's state in any run that does
not draw it, and the widget then comes back at its first option or its minimum.
So every bound widget is re-seeded from ``prefs`` before it is drawn, and its
``on_change`` callback (which runs before the script) copies a user's change back.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import streamlit as st

from saliency_core.imaging import FIT_MODES
from saliency_core.labels import shorten_label
from saliency_core.live import LIVE_METHODS
from saliency_core.methods import METHODS
from saliency_core.methods.base import Param
from saliency_core.methods.params import ParamValueError, describe_allowed, parse_param
from saliency_core.models.registry import DEFAULT_MODEL_KEY, MODELS
from saliency_core.plotting import COLORMAPS, DEFAULT_OPACITY, OPACITY_STEPS
from saliency_core.postprocess import DEFAULT_CLIP_PERCENTILE, REDUCTIONS
from saliency_core.samples import DEFAULT_SAMPLE, SAMPLES

PREFS = "prefs"
SOURCES = ("Sample", "Upload", "Camera")
CUSTOM_PREFIX = "custom:"
_DIGITS = re.compile(r"[0-9]{1,6}")
_DECIMAL = re.compile(r"[0-9]{1,3}(\.[0-9]{1,4})?")
_HEX = re.compile(r"[0-9a-f]{12}")


def parse_index(raw: str) -> int | None:
    """A class index from a URL: ASCII digits only, at most 6 of them."""
    return int(raw) if _DIGITS.fullmatch(raw) else None


def parse_decimal(raw: str, low: float, high: float) -> float | None:
    """A plain ASCII decimal such as ``0.7`` within ``[low, high]``."""
    if not _DECIMAL.fullmatch(raw):
        return None
    value = float(raw)
    return value if low <= value <= high else None


def _choice(options) -> Callable[[str], Any]:
    return lambda raw: raw if raw in options else None


@dataclass(frozen=True)
class Setting:
    """One setting.

    Attributes:
        name: key in ``prefs`` and in the URL.
        default: the value before the user chooses anything.
        parse: turns a URL string into a value, or ``None`` if it is not valid.
        in_url: whether shared links carry it.
        page: the one page whose links carry it (None: every page's).
        to_url: formats the value for a link (default: ``str``).
    """

    name: str
    default: Any
    parse: Callable[[str], Any]
    in_url: bool = True
    page: str | None = None
    to_url: Callable[[Any], str] | None = None


def _bool(raw: str) -> bool | None:
    return {"1": True, "0": False}.get(raw)


LESSON_PAGE = "how_it_works"
LESSON_K = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
"""Choices of how many pixels the Taylor test nudges."""
LESSON_EPSILONS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
"""Choices for the two ends of the Taylor test's nudge range (grey levels)."""


def _lesson_k(raw: str) -> int | None:
    value = parse_index(raw)
    return value if value in LESSON_K else None


def _eps_range(raw: str) -> tuple[float, float] | None:
    """``"0.01-10"`` -> ``(0.01, 10.0)``, both ends among :data:`LESSON_EPSILONS`."""
    parts = raw.split("-")
    if len(parts) != 2:
        return None
    ends = [parse_decimal(part, 0.0, 1000.0) for part in parts]
    if None in ends or not all(e in LESSON_EPSILONS for e in ends) or ends[0] >= ends[1]:
        return None
    return ends[0], ends[1]


def _format_eps_range(value: tuple[float, float]) -> str:
    return "-".join(f"{v:g}" for v in value)


SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("model", DEFAULT_MODEL_KEY, _choice(MODELS)),
    Setting("source", "Sample", _choice(SOURCES), in_url=False),
    Setting("sample", DEFAULT_SAMPLE, _choice(SAMPLES)),
    Setting("class", None, parse_index),  # None: the image's top-1 class
    Setting("score", "logit", _choice(("logit", "probability"))),
    Setting("fit", "crop", _choice(FIT_MODES)),
    Setting("method", "vanilla", _choice(METHODS)),
    Setting("contrast", None, parse_index),  # None: no contrast; else the class S_b
    Setting("cmap", "viridis", _choice(COLORMAPS)),
    Setting("opacity", DEFAULT_OPACITY, lambda raw: parse_decimal(raw, 0.0, 1.0)),
    Setting("fade", True, _bool),  # weak values fade, so the photo shows through
    Setting("clip", DEFAULT_CLIP_PERCENTILE, lambda raw: parse_decimal(raw, 90.0, 100.0)),
    Setting("reduction", "max_abs", _choice(REDUCTIONS)),
    Setting("lesson.k", 100, _lesson_k, page=LESSON_PAGE),
    Setting("lesson.eps", (0.01, 10.0), _eps_range, page=LESSON_PAGE,
            to_url=_format_eps_range),
    # Live page: its method, SmoothGrad's few samples, and a pinned class (None: top-1)
    Setting("live_method", "vanilla", _choice(LIVE_METHODS), in_url=False),
    Setting("live_samples", 3, parse_index, in_url=False),
    Setting("live_class", None, parse_index, in_url=False),
)}


def _param_parser(param: Param) -> Callable[[str], Any]:
    """A link's value of a method parameter, read with the command line's rules and the
    widget's range (:func:`saliency_core.methods.params.parse_param`), or ``None``."""
    def parse(raw: str) -> Any:
        try:
            return parse_param(param, raw)
        except ParamValueError:
            return None
    return parse


def _refused_param(name: str, raw: str) -> str:
    """One line on a link's method parameter that was not applied, with the allowed range."""
    method, _, param_name = name.partition(".")
    param = next(p for p in METHODS[method].params if p.name == param_name)
    try:
        parse_param(param, raw[:200])
        rule = f"{param_name} takes {describe_allowed(param)}"
    except ParamValueError as exc:
        rule = exc.rule
    default = "the default is" if param.default is None else f"the default, {param.default}, is"
    return f"{name}: {rule}; {default} used"


def param_setting_name(method: str, param: str) -> str:
    """The setting (and URL key) of one method parameter, e.g. ``smoothgrad.samples``."""
    return f"{method}.{param}"


PARAM_SETTINGS: dict[str, Setting] = {
    param_setting_name(key, p.name): Setting(param_setting_name(key, p.name), p.default,
                                             _param_parser(p))
    for key, cls in METHODS.items() for p in cls.params}


def default_of(name: str) -> Any:
    """The one default of a setting (or method parameter)."""
    if name in SETTINGS:
        return SETTINGS[name].default
    return PARAM_SETTINGS[name].default


def defaults() -> dict[str, Any]:
    """Every setting's default."""
    values = {name: s.default for name, s in SETTINGS.items()}
    values.update({name: s.default for name, s in PARAM_SETTINGS.items()})
    return values


@dataclass(frozen=True)
class LinkNotice:
    """What a shared link asked for that cannot be shown here, told to the user once.

    Attributes:
        kind: ``"photo"`` (the link was made from an uploaded photo or snapshot),
            ``"model"`` (it names someone's own model, not loaded here), ``"param"``
            (a method parameter outside the range the app allows) or ``"class"`` (a
            class the link's model does not have).
        detail: the photo's short SHA-256, the model's key, or for a parameter or a
            class one line saying what was refused.
        class_index: the class the link named, which was *not* applied.
    """

    kind: str
    detail: str
    class_index: int | None


def read_query(query: dict[str, str]) -> tuple[dict[str, Any], list[LinkNotice]]:
    """Settings from a URL's query, strictly parsed, plus notices for what was dropped.

    A link made from an upload carries ``photo=<12 hex digits>`` instead of a
    sample, and one made with an own model carries ``model=custom:…``. Neither
    the photo nor the model can travel in a link, so their class (and contrast)
    are not applied to the sample or the default model: the caller shows the
    notices instead. The photo's class is kept as ``pending_photo`` and applied
    only if the user uploads a photo with the same digest.

    Args:
        query: the raw URL parameters.

    Returns:
        ``(values, notices)``: only valid, known settings are in ``values``.
    """
    values: dict[str, Any] = {}
    notices: list[LinkNotice] = []
    for name, setting in {**SETTINGS, **PARAM_SETTINGS}.items():
        raw = query.get(name)
        if raw is None or not setting.in_url:
            continue
        parsed = setting.parse(raw) if len(raw) <= 200 else None
        if parsed is not None:
            values[name] = parsed
        elif name in PARAM_SETTINGS:
            notices.append(LinkNotice("param", _refused_param(name, raw), None))
    model = query.get("model", "")
    if not model.startswith(CUSTOM_PREFIX):
        notices += drop_missing_classes(values)
    if model.startswith(CUSTOM_PREFIX):
        notices.append(LinkNotice("model", model[:80], values.get("class")))
        values.pop("class", None)
        values.pop("contrast", None)
        for name in list(values):
            if name.endswith(".layer"):
                values.pop(name)
    photo = query.get("photo", "")
    if photo and "sample" not in values:
        digest = photo if _HEX.fullmatch(photo) else ""
        notices.append(LinkNotice("photo", digest, values.get("class")))
        if digest and not any(n.kind == "model" for n in notices):
            values["pending_photo"] = (digest, values.get("class"), values.get("contrast"))
        values.pop("class", None)
        values.pop("contrast", None)
    return values, notices


def drop_missing_classes(values: dict[str, Any]) -> list[LinkNotice]:
    """Take a link's ``class`` and ``contrast`` out of ``values`` when the link's registered
    model has no such class; a notice for each (a class written back to the URL would make
    every link copied from the page carry it on)."""
    spec = MODELS[values.get("model", DEFAULT_MODEL_KEY)]
    count = len(spec.class_names)
    notices = []
    for name, words in (("class", "class"), ("contrast", "contrast class")):
        index = values.get(name)
        if index is not None and index >= count:
            del values[name]
            notices.append(LinkNotice(
                "class", f"The link names {words} {index}, but {spec.display_name} has "
                         f"classes 0 to {count - 1}", index))
    return notices


def init_state() -> None:
    """Initialise session state once per session, reading the URL's settings."""
    if PREFS in st.session_state:
        return
    values, notices = read_query({k: st.query_params.get(k) for k in st.query_params.keys()})
    prefs = defaults()
    prefs["pending_photo"] = values.pop("pending_photo", None)
    prefs.update(values)
    st.session_state[PREFS] = prefs
    st.session_state["link_notices"] = notices
    st.session_state["weights_errors"] = {}


def get(name: str) -> Any:
    """The current value of a setting."""
    return st.session_state[PREFS].get(name, default_of(name) if name in SETTINGS
                                       or name in PARAM_SETTINGS else None)


def put(name: str, value: Any) -> None:
    """Change a setting; its widget shows the new value the next time it is drawn."""
    st.session_state[PREFS][name] = value


def class_for_image(digest: str, model_key: str, top_class: int, num_classes: int
                    ) -> tuple[int, bool]:
    """The class to explain on this image and model: ``(class, context_changed)``.

    A new image or model goes back to its top-1 class (and drops the contrast);
    everything else keeps the class, which falls back to the top-1 when unset or
    out of range. Shared by every page that explains one class.
    """
    context = f"{digest[:12]}_{model_key}"
    changed = st.session_state.get("class_context") not in (None, context)
    if changed:
        put("class", None)
        put("contrast", None)
    st.session_state["class_context"] = context
    current = get("class")
    if current is None or not 0 <= current < num_classes:
        current = top_class
        put("class", current)
    return int(current), changed


def bind_class(digest: str, model_key: str, predictions, class_names, label: str,
               with_probability: bool = False, **kwargs) -> int:
    """The "class to explain" select box of a page that explains one class, as on Explore.

    The options are the image's top classes (plus the current class if it is not among
    them); :func:`class_for_image` decides the class when the image or model changes.

    Args:
        digest: the image's SHA-256.
        model_key: the model.
        predictions: the image's top predictions, best first.
        class_names: every class name of the model.
        label: the widget's label.
        with_probability: show each top class's probability in its option.
        **kwargs: passed to ``st.selectbox`` (e.g. ``help``).
    """
    top = [p.index for p in predictions]
    class_for_image(digest, model_key, top[0], len(class_names))
    options = top + [c for c in [get("class")] if c not in top]
    shown = {p.index: p.probability for p in predictions} if with_probability else {}
    return bind("class", st.selectbox, options=options, label=label,
                format_func=lambda i: f"{shorten_label(class_names[i])} (#{i})"
                + (f", {shown[i]:.0%}" if i in shown else ""), **kwargs)


def _copy_back(name: str, key: str, convert: Callable[[Any], Any] | None) -> None:
    value = st.session_state[key]
    st.session_state[PREFS][name] = convert(value) if convert else value


def bind(name: str, widget: Callable[..., Any], options: list | None = None,
         default: Any = None, convert: Callable[[Any], Any] | None = None,
         on_change: Callable[[], None] | None = None, **kwargs) -> Any:
    """Draw ``widget`` bound to the setting ``name``; return its value.

    The widget is re-seeded from ``prefs`` on every run, so its value never depends
    on whether it was drawn in the previous run.

    Args:
        name: the setting.
        widget: a Streamlit widget function (``st.selectbox``, ``st.slider``…).
        options: the widget's options, if it has any; a stored value that is not
            among them falls back to ``default`` (or the setting's default, or the
            first option).
        default: fallback for settings that are not in :data:`SETTINGS`.
        convert: applied to the widget's value before it is stored.
        on_change: called after the value is stored.
        **kwargs: passed to the widget.
    """
    key = f"w_{name}"
    multi = widget is st.multiselect
    if options is not None:
        kwargs["options"] = options

    def valid(value: Any) -> bool:
        if options is None:
            return value is not None
        if multi:
            return isinstance(value, list) and all(v in options for v in value)
        return value in options

    prefs = st.session_state[PREFS]
    known = name in SETTINGS or name in PARAM_SETTINGS
    fallback = default if default is not None or not known else default_of(name)
    current = prefs.get(name, fallback)
    if not valid(current):
        current = fallback if valid(fallback) else ([] if multi else options[0])
    prefs[name] = current
    st.session_state[key] = current

    def changed() -> None:
        _copy_back(name, key, convert)
        if on_change is not None:
            on_change()

    return widget(key=key, on_change=changed, **kwargs)


def bind_range(name: str, options: list, **kwargs) -> tuple[Any, Any]:
    """A range ``st.select_slider`` bound to the setting ``name`` (a ``(low, high)`` tuple).

    Unlike :func:`bind`, the stored range is passed as ``value`` instead of being
    seeded into the widget's state: a range select slider whose value comes only
    from session state is taken for a single-value slider, and a user's change
    then comes back as one number. Passing ``value`` on every run is as safe: while
    the widget keeps its state, that state is the value last copied back.
    """
    key = f"w_{name}"
    prefs = st.session_state[PREFS]
    current = prefs.get(name)
    if not (isinstance(current, tuple) and len(current) == 2
            and all(v in options for v in current) and current[0] < current[1]):
        current = default_of(name)
    prefs[name] = current

    def changed() -> None:
        low, high = st.session_state[key]
        if low < high:  # a range squeezed to one point keeps the last real range
            prefs[name] = (low, high)

    low, high = st.select_slider(key=key, options=options, value=current, on_change=changed,
                                 **kwargs)
    return (low, high) if low < high else current


def snap_opacity(value: float) -> float:
    """The nearest step of the overlay's opacity slider."""
    return min(OPACITY_STEPS, key=lambda s: abs(s - float(value)))


def url_values(method: str, share_sample: bool, photo_digest: str | None,
               page: str | None = None) -> dict[str, str]:
    """The URL parameters of the current view (every setting, the method's parameters).

    Args:
        method: the current method (only its parameters go in the link).
        share_sample: the image is a bundled sample, so the link can name it.
        photo_digest: the SHA-256 of an uploaded photo or snapshot, which a link
            cannot carry; its first 12 digits let a visitor's re-upload of the
            same photo restore the class.
        page: the page drawing the view; settings of other pages stay out.
    """
    prefs = st.session_state[PREFS]
    wanted: dict[str, str] = {}
    for name, setting in SETTINGS.items():
        value = prefs.get(name)
        if (not setting.in_url or value is None or setting.page not in (None, page)
                or (name == "sample" and not share_sample)):
            continue
        if setting.to_url is not None:
            wanted[name] = setting.to_url(value)
        else:
            wanted[name] = ("1" if value else "0") if isinstance(value, bool) else str(value)
    if not share_sample and photo_digest:
        wanted["photo"] = photo_digest[:12]
    for param in METHODS[method].params:
        name = param_setting_name(method, param.name)
        value = prefs.get(name)
        if value is not None:
            wanted[name] = str(value)
    return wanted


def sync_query_params(method: str, share_sample: bool, photo_digest: str | None,
                      page: str | None = None) -> None:
    """Write the current view to the URL, so the address bar is a shareable link."""
    wanted = url_values(method, share_sample, photo_digest, page)
    current = {k: st.query_params.get(k) for k in st.query_params.keys()}
    if current != wanted:
        st.query_params.from_dict(wanted)
