"""The opening every page shares: title, model, image, what the model sees, class.

A page reads: :func:`open_page` (or :func:`start_page` and :func:`open_model` for a
page without a single photo), its own controls, compute, render. The opening was
once written out on each page, and each copy drifted a little in order and wording;
here it is written once, with options for what really differs between pages:

- where the image picker and the class picker go (the page's columns);
- whether the page offers the fit (Explore, with its preview) or uses the fit set
  there (the other pages);
- whether the page picks a class with the shared select box (Trust, How it works),
  picks it its own way (Explore's top-5 radio and search) or explains no single class
  (Compare's columns);
- whether the page shows the notices of a shared link (Audit and Live never build
  links from one photo, so they do not).

Widget keys, labels and URL parameters are those of :mod:`pages.lib.settings` and
:mod:`pages.lib.image_choice`; shared links and tests rely on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from pages.lib import caching, image_choice, layout, own_models, settings
from pages.lib.caching import PreparedImage
from pages.lib.image_choice import ChosenImage
from saliency_core.imaging import LoadedImage
from saliency_core.tf_adapter import KerasClassifier

CLASS_LABEL = "Class to explain"


@dataclass(frozen=True)
class PageModel:
    """The model the sidebar picked, loaded.

    Attributes:
        key: the model's key (``settings`` name ``model``; ``custom:…`` for own models).
        name: what the model picker shows for it.
        classifier: the loaded classifier.
        token: its weights token, part of every cache key.
    """

    key: str
    name: str
    classifier: KerasClassifier
    token: str

    @property
    def class_names(self) -> tuple[str, ...]:
        """Every class name of the model, by class index."""
        return self.classifier.class_names


@dataclass(frozen=True)
class Opening:
    """What a page that explains one photo works on, after :func:`open_page`.

    Attributes:
        model: the loaded model.
        chosen: the photo and where it came from (sample, upload or snapshot).
        fit: how the photo is fitted to the model's input (``"crop"`` or ``"squash"``).
        prepared: the model's input ``(h, w, 3)``, the part of the photo it sees and the
            model's top classes for it.
        class_index: the class to explain, or ``None`` when the page picks no class
            with the shared picker.
        columns: the page's columns, as asked for; the page draws its own controls and
            results into them.
    """

    model: PageModel
    chosen: ChosenImage
    fit: str
    prepared: PreparedImage
    class_index: int | None
    columns: tuple[DeltaGenerator, ...]

    @property
    def image(self) -> LoadedImage:
        """The decoded photo."""
        return self.chosen.image

    @property
    def top(self) -> list[int]:
        """The indices of the model's top classes for this photo, best first."""
        return [p.index for p in self.prepared.predictions]


def start_page(title: str, caption: str, *, notices: bool = True) -> None:
    """A page's first lines: the settings exist, its title and what it is for, and what a
    shared link asked for that this browser cannot show (``notices``)."""
    layout.page_setup()
    st.title(title)
    st.caption(caption)
    if notices:
        layout.show_link_notices()


def open_model() -> PageModel:
    """The model picked in the sidebar, loaded; the page stops under the reason when it
    cannot be (an own model from another session, weights that cannot be had)."""
    key = settings.get("model")
    name = own_models.model_display_name(key)
    classifier, token = own_models.classifier_for(key)
    if classifier is None:
        st.stop()
    return PageModel(key, name, classifier, token)


def open_page(title: str, caption: str, *, columns: Sequence[float], gap: str = "large",
              image_heading: str | None = None, choose_fit: bool = False,
              pick_class: bool = False, class_column: int = 0,
              class_help: str | None = None, class_probabilities: bool = False) -> Opening:
    """The shared opening of a page that explains one photo.

    Title and caption, the link notices, the model (:func:`open_model`), then the page's
    columns; in the first one the image picker (the page stops when there is no usable
    photo yet, after saying why), the fit and the model's top classes, and, if asked, the
    class picker.

    Args:
        title: the page's title.
        caption: one line under it, what the page is for.
        columns: the relative widths of the page's columns (``st.columns``).
        gap: the gap between the columns.
        image_heading: a subheader above the image picker (Explore's numbered steps).
        choose_fit: offer the fit, with a preview of what the model sees; otherwise use
            the fit last set (on Explore, Audit or Live).
        pick_class: draw the shared "Class to explain" select box (the image's top
            classes); otherwise ``class_index`` is ``None`` and the page picks its own.
        class_column: the column the class picker goes in.
        class_help: the class picker's help text.
        class_probabilities: show each top class's probability in the class picker.
    """
    start_page(title, caption)
    model = open_model()
    placed = tuple(st.columns(list(columns), gap=gap))
    with placed[0]:
        if image_heading:
            st.subheader(image_heading)
        chosen = image_choice.choose_image()
        if chosen is None:
            st.stop()
        image = chosen.image
        fit = (image_choice.choose_fit(image, model.classifier.input_size) if choose_fit
               else settings.get("fit"))
        prepared = caching.prepare_image(model.key, model.token, model.classifier, image, fit)
    class_index = None
    if pick_class:
        with placed[class_column]:
            class_index = settings.bind_class(
                image.digest, model.key, prepared.predictions, model.class_names,
                label=CLASS_LABEL, with_probability=class_probabilities, help=class_help)
    return Opening(model, chosen, fit, prepared, class_index, placed)
