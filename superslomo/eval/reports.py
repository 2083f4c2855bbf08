"""Writing reports (JSON, JUnit XML) the way every command writes files: temp name, then rename."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import numpy as np

from superslomo.contracts.files import atomic_path
from superslomo.errors import SloMoError


def json_safe(value: Any) -> Any:
    """JSON has no inf/NaN: identical frames give an infinite PSNR, a broken graph a NaN one."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value == math.inf else ("-inf" if value == -math.inf else "nan")
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_atomic(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    if not path.parent.is_dir():
        raise SloMoError(f"report folder does not exist: {path.parent}")
    if path.is_dir():
        raise SloMoError(f"report path is a folder: {path}")
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def write_json(path: str | os.PathLike, data: dict) -> Path:
    return write_atomic(path, json.dumps(json_safe(data), indent=2) + "\n")


def write_junit(path: str | os.PathLike, suite: str, cases: list[dict], seconds: float = 0.0) -> Path:
    """cases: dicts with classname, name, and failure (a message, or None when it passed)."""
    failures = sum(1 for c in cases if c.get("failure"))
    root = ET.Element("testsuites", tests=str(len(cases)), failures=str(failures), time=f"{seconds:.3f}")
    node = ET.SubElement(
        root,
        "testsuite",
        name=suite,
        tests=str(len(cases)),
        failures=str(failures),
        errors="0",
        skipped="0",
        time=f"{seconds:.3f}",
    )
    for case in cases:
        element = ET.SubElement(node, "testcase", classname=case["classname"], name=case["name"], time="0")
        if case.get("failure"):
            failure = ET.SubElement(element, "failure", message=case["failure"], type="ParityFailure")
            failure.text = case.get("details") or case["failure"]
        elif case.get("details"):
            ET.SubElement(element, "system-out").text = case["details"]
    ET.indent(root)
    return write_atomic(path, ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n")
