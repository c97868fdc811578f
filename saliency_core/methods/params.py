"""Reading a method parameter from text, within the range its :class:`Param` declares.

One table decides what a parameter may be: the method's :class:`Param`
definitions (``params``, the controls the app draws, and ``extra_params``,
seeds and the like that only the command line sets). The app's sliders take
their bounds from it, and :func:`parse_param` applies the same bounds to
``--param NAME=VALUE`` and to a shared link's ``method.name=value``, so neither
can ask for what no widget offers (``samples=1000000000``, ``noise=nan``).
"""

from __future__ import annotations

import math
import re
from typing import Any

from saliency_core.methods.base import Param, SaliencyMethod

_INTEGER = re.compile(r"[+-]?[0-9]{1,30}")
_DECIMAL = re.compile(r"[+-]?([0-9]{1,30}(\.[0-9]{0,30})?|\.[0-9]{1,30})([eE][+-]?[0-9]{1,4})?")
_NAME = re.compile(r"[A-Za-z0-9_./:-]{1,120}")
_SHOWN = re.compile(r"[A-Za-z0-9_.+-]{1,24}")
_BOOLEANS = {"1": True, "true": True, "0": False, "false": False}


class ParamValueError(ValueError):
    """A parameter value is not allowed; ``str()`` is one line naming the allowed values.

    Attributes:
        name: the parameter.
        rule: ``"NAME takes ..."``, the allowed values without the refused one.
    """

    def __init__(self, param: Param, raw: str):
        self.name = param.name
        self.rule = f"{param.name} takes {describe_allowed(param)}"
        shown = raw.strip()
        super().__init__(self.rule + (f", not {shown}" if _SHOWN.fullmatch(shown) else ""))


def method_params(cls: type[SaliencyMethod]) -> dict[str, Param]:
    """Every parameter of a method that may be set from outside, by name (one table)."""
    return {param.name: param for param in (*cls.params, *cls.extra_params)}


def _number(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e6 else str(int(value))


def _kind(param: Param) -> str:
    if param.options:
        return "choice"
    if isinstance(param.default, bool):
        return "bool"
    if isinstance(param.default, int):
        return "int"
    if isinstance(param.default, float):
        return "float"
    return "name"


def describe_allowed(param: Param) -> str:
    """The allowed values in words, e.g. ``"a whole number from 1 to 100"``."""
    kind = _kind(param)
    if kind == "choice":
        return "one of " + ", ".join(map(str, param.options))
    if kind == "bool":
        return "true or false"
    if kind == "name":
        return "a layer name"
    noun = "a whole number" if kind == "int" else "a number"
    return f"{noun} from {_number(param.minimum)} to {_number(param.maximum)}"


def check_value(param: Param, value: Any, raw: str | None = None) -> Any:
    """``value`` if it is allowed for ``param`` (the same rules as :func:`parse_param`);
    ``raw``, the text it was read from, is what a refusal repeats.

    Raises:
        ParamValueError: it is not.
    """
    kind = _kind(param)
    if kind == "choice":
        if value in param.options:
            return value
    elif kind == "bool":
        if isinstance(value, bool):
            return value
    elif kind == "name":
        if value is None or (isinstance(value, str) and _NAME.fullmatch(value)):
            return value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if kind == "int" and float(value).is_integer() and math.isfinite(value):
            value = int(value)
        if (kind == "float" or isinstance(value, int)) and math.isfinite(value) \
                and param.minimum <= value <= param.maximum:
            return int(value) if kind == "int" else float(value) + 0.0
    raise ParamValueError(param, str(value) if raw is None else raw)


def parse_param(param: Param, raw: str) -> Any:
    """A parameter's value from text (a command line or a link), checked against its range.

    Integers are plain decimal digits, numbers plain decimals (an exponent is
    allowed); ``nan``, ``inf`` and anything outside ``[minimum, maximum]`` are
    refused, and so is a number beyond the range of a float.

    Raises:
        ParamValueError: one line with the allowed values.
    """
    text = raw.strip()
    kind = _kind(param)
    if kind == "choice":
        return check_value(param, text)
    if kind == "bool":
        if text.lower() in _BOOLEANS:
            return _BOOLEANS[text.lower()]
        raise ParamValueError(param, raw)
    if kind == "name":
        return check_value(param, text)
    if kind == "int":
        if not _INTEGER.fullmatch(text):
            raise ParamValueError(param, raw)
        return check_value(param, int(text), raw)
    if not _DECIMAL.fullmatch(text):
        raise ParamValueError(param, raw)
    return check_value(param, float(text), raw)
