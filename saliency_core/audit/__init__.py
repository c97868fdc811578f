"""Audit many images: batch attribution with per-image outputs and provenance.

Pure core (no Streamlit), shared by ``python -m saliency_core explain`` and the
Audit page:

* :mod:`~saliency_core.audit.border`: the border share, a first shortcut indicator;
* :mod:`~saliency_core.audit.provenance`: everything needed to reproduce a map;
* :mod:`~saliency_core.audit.batch`: images in, attributions out, in batches;
* :mod:`~saliency_core.audit.outputs`: overlay PNG, raw ``.npy``, JSON, ``summary.csv``;
* :mod:`~saliency_core.audit.uploads`: many uploaded files or a ``.zip``, with limits.
"""
