"""Quantities as Kubernetes writes them (`500Mi`, `2Gi`, `1000000`, `250m`, `1.5`, `1e3`).

apimachinery's resource.Quantity (k8s.io/apimachinery pkg/api/resource/quantity.go): a decimal number,
then a binary suffix (Ki … Ei), a decimal suffix (n, u, m, k, M, G, T, P, E) or an exponent (e3, E-2).
The scheduler counts cpu in millicores and everything else in units, rounding up (MilliValue, Value).
"""
from __future__ import annotations

import math
import re
from fractions import Fraction
from functools import lru_cache

_SIZE = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_UNITS = {None: 1, "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12, "Ki": 1 << 10, "Mi": 1 << 20,
          "Gi": 1 << 30, "Ti": 1 << 40}

_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(?:(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)|[eE]([+-]?\d+))?$")
_SUFFIX = {None: Fraction(1), "n": Fraction(1, 10 ** 9), "u": Fraction(1, 10 ** 6), "m": Fraction(1, 1000),
           "k": Fraction(10 ** 3), "M": Fraction(10 ** 6), "G": Fraction(10 ** 9), "T": Fraction(10 ** 12),
           "P": Fraction(10 ** 15), "E": Fraction(10 ** 18), "Ki": Fraction(1 << 10), "Mi": Fraction(1 << 20),
           "Gi": Fraction(1 << 30), "Ti": Fraction(1 << 40), "Pi": Fraction(1 << 50), "Ei": Fraction(1 << 60)}
MAX_EXPONENT = 30  # a quantity beyond 10^30 is no resource anyone has; refused rather than computed


def parse_size(text: str) -> int:
    """A Kubernetes-style quantity of bytes: 500Mi, 2Gi, 1000000."""
    found = _SIZE.match(str(text).strip())
    if not found:
        raise ValueError(text)
    return int(found.group(1)) * _UNITS[found.group(2)]


def parse_quantity(text: object) -> Fraction:
    """Any resource.Quantity string (or a bare number a YAML file gave), exactly."""
    if isinstance(text, bool):
        raise ValueError(text)
    if isinstance(text, int):
        return Fraction(text)
    found = _QUANTITY.match(str(text).strip())
    if not found:
        raise ValueError("invalid quantity %r" % (text,))
    number, suffix, exponent = found.groups()
    if exponent is not None:
        if abs(int(exponent)) > MAX_EXPONENT:
            raise ValueError("invalid quantity %r" % (text,))
        return Fraction(number) * Fraction(10) ** int(exponent)
    return Fraction(number) * _SUFFIX[suffix]


@lru_cache(maxsize=4096)  # a cluster's pods and nodes repeat a few dozen quantities
def amount(resource: str, text: object) -> int:
    """The scheduler's integer for one resource: millicores for cpu, units (bytes, pods, devices) otherwise,
    rounded up; a negative quantity counts as 0."""
    value = parse_quantity(text) * (1000 if resource == "cpu" else 1)
    return max(0, math.ceil(value))
