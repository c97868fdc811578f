"""WebRTC network settings for the live stream: the ICE servers, empty by default.

On one machine (``localhost``) or a local network the browser and the server reach
each other directly, so no STUN or TURN server is needed and none is contacted.
Across networks (NAT, firewalls) the operator names a TURN server in the
``[live]`` table of ``saliency_studio.toml`` (the same file as ``[weights]`` and
``[limits]``)::

    [live]
    ice_servers = [{ urls = "turn:turn.example.org:3478", username = "u", credential = "p" }]
"""

from __future__ import annotations

import logging
import tomllib

from saliency_core.safety.limits import config_path

_log = logging.getLogger("saliency_studio")
_SCHEMES = ("stun:", "turn:", "turns:")


def _valid_server(entry: object) -> dict | None:
    if not isinstance(entry, dict):
        return None
    urls = entry.get("urls")
    listed = [urls] if isinstance(urls, str) else urls
    if not isinstance(listed, list) or not listed or not all(
            isinstance(u, str) and u.startswith(_SCHEMES) for u in listed):
        return None
    server: dict = {"urls": urls}
    for key in ("username", "credential"):
        if key in entry:
            if not isinstance(entry[key], str):
                return None
            server[key] = entry[key]
    return server


def read_ice_servers(text: str | None = None) -> list[dict]:
    """The ``[live] ice_servers`` of the config file, checked; ``[]`` when unset.

    Args:
        text: the config file's text (read from :func:`config_path` when ``None``).

    Returns:
        A list of ``{"urls": ..., "username"?: ..., "credential"?: ...}``; entries
        that are not STUN/TURN servers are left out with a warning in the log.
    """
    if text is None:
        path = config_path()
        if not path.is_file():
            return []
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            _log.warning("Could not read %s: %s", path.name, exc)
            return []
    try:
        entries = tomllib.loads(text).get("live", {}).get("ice_servers", [])
    except (tomllib.TOMLDecodeError, AttributeError) as exc:
        _log.warning("Ignoring the [live] settings: %s", exc)
        return []
    if not isinstance(entries, list):
        _log.warning("[live] ice_servers must be a list of tables; ignored")
        return []
    servers = []
    for entry in entries:
        server = _valid_server(entry)
        if server is None:
            _log.warning("Ignoring a [live] ice_servers entry that is not a STUN/TURN server")
        else:
            servers.append(server)
    return servers
