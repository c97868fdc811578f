"""The pages' shared parts.

pylibsrtp (loaded by aiortc, under streamlit-webrtc on the Live page) carries its own
copy of OpenSSL's symbols; imported after TensorFlow it crashes the whole process
(a segfault in ``srtp_init``). Every page and app.py import this package before
anything that loads TensorFlow, so it is loaded first here.
"""

import pylibsrtp  # noqa: F401
