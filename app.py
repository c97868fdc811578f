"""Saliency Studio: the server, warm before the first visitor, with upload quotas.

Run with ``streamlit run app.py``. Streamlit finds the ``st.App`` below and serves
the navigation script ``pages/router.py`` with:

* a lifespan that loads, times and traces the default model (and starts a
  photo-decoding worker) when the server starts, so no visitor waits for it;
* middleware on Streamlit's upload endpoint that holds each session, and all of
  them together, to their upload quotas, and a sweeper that frees uploads no
  widget asked for (``pages/lib/server.py``).
"""

import streamlit as st
from starlette.middleware import Middleware

from pages.lib.server import UploadQuota, lifespan

app = st.App("pages/router.py", lifespan=lifespan, middleware=[Middleware(UploadQuota)])
