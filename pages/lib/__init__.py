"""The pages' shared parts.

pylibsrtp (loaded by aiortc, under streamlit-webrtc on the Live page) carries its own
copy of OpenSSL's symbols; imported after TensorFlow it crashes the whole process
(a segfault in ``srtp_init``). Every page and app.py import this package before
anything that loads TensorFlow, so it is loaded first here. It is part of the
optional ``[live]`` extra: without it nothing can load it later either, and the Live
page says how to install it.
"""

try:
    import pylibsrtp  # noqa: F401
except ImportError:  # the [live] extra is not installed
    pass
