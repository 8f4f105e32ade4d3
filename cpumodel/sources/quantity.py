"""Byte quantities as Kubernetes writes them (`500Mi`, `2Gi`, `1000000`)."""
from __future__ import annotations

import re

_SIZE = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_UNITS = {None: 1, "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12, "Ki": 1 << 10, "Mi": 1 << 20,
          "Gi": 1 << 30, "Ti": 1 << 40}


def parse_size(text: str) -> int:
    """A Kubernetes-style quantity of bytes: 500Mi, 2Gi, 1000000."""
    found = _SIZE.match(str(text).strip())
    if not found:
        raise ValueError(text)
    return int(found.group(1)) * _UNITS[found.group(2)]
