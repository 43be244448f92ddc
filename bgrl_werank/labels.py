"""Human-readable names of methods and runs, shared by reports, tables, sweeps and plots."""

from __future__ import annotations

from typing import Any

# method.name → how papers write it
METHOD_TITLES = {"bgrl": "BGRL", "grace": "GRACE", "gbt": "G-BT", "cca_ssg": "CCA-SSG", "vicreg": "VICReg"}


def method_title(name: str) -> str:
    """``"cca_ssg"`` → ``"CCA-SSG"``; an unknown (user-registered) name is returned as it is."""
    return METHOD_TITLES.get(name, name)


def run_label(method: str, werank: bool) -> str:
    """``("grace", True)`` → ``"GRACE + WERank"``."""
    return method_title(method) + (" + WERank" if werank else "")


def report_method(report: dict[str, Any]) -> str:
    """The method of a run's ``report.json``; reports written before methods existed were all BGRL."""
    return str(report.get("method", "bgrl"))
