"""The one exception type xcam raises for bad input: its message is a single line meant for the user."""

import difflib


class XcamError(ValueError):
    """Bad input: what was wrong and what is valid, in one line."""


def nearest(name: str, candidates, n: int = 5) -> list[str]:
    """The candidates closest to ``name`` (difflib ratio), best first; substring matches count too."""
    candidates = list(candidates)
    close = difflib.get_close_matches(name, candidates, n=n, cutoff=0.4)
    subs = [c for c in candidates if name and name.lower() in c.lower() and c not in close]
    return (close + subs)[:n]
