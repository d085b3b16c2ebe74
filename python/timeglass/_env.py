"""The TIMEGLASS_* settings the Python side reads, read as the preload
library reads them (preload/env.c) and as `timeglass run` checks them.

Under `timeglass run` they arrive checked and in one spelling; an app
started without it, or one that changed its own environment, may hold
anything. A value the matching option would refuse is clamped into range or
ignored for the default, and said once per variable on stderr.
"""

import os
import sys

FALSE = ("0", "no", "false", "off")
TRUE = ("1", "yes", "true", "on")

_said = set()


def _say_once(name, value, what, using):
    if name in _said:
        return
    _said.add(name)
    shown = "".join(c if " " <= c < "\x7f" else "?" for c in value[:32]) + ("..." if len(value) > 32 else "")
    sys.stderr.write("timeglass: %s='%s' is not %s; using %s\n" % (name, shown, what, using))


def flag(name, default=False):
    """1/yes/true/on or 0/no/false/off (any case); unset or empty: default."""
    value = os.environ.get(name, "")
    if not value:
        return default
    if value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return False
    _say_once(name, value, "1 or 0", "1" if default else "0")
    return default


def uint(name, default, low, high):
    """A plain decimal integer in [low, high] (clamped); unset, empty or not
    such an integer: default."""
    value = os.environ.get(name, "")
    if not value:
        return default
    what = "an integer %d..%d" % (low, high)
    if not (value.isascii() and value.isdigit()):
        _say_once(name, value, what, str(default))
        return default
    number = int(value)
    if number < low or number > high:
        number = min(max(number, low), high)
        _say_once(name, value, what, str(number))
    return number


def choice(name, default, choices):
    """One of choices; unset, empty or anything else: default."""
    value = os.environ.get(name, "")
    if not value:
        return default
    if value not in choices:
        _say_once(name, value, "one of " + ", ".join(choices), default)
        return default
    return value
