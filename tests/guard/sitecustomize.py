"""Loaded by Python at start-up when tests put this folder on PYTHONPATH.

With CPUMODEL_NO_NETWORK=1 every socket connection fails, so an offline command that
tried to reach a cluster fails loudly instead of passing by accident.
"""
import os
import socket

if os.environ.get("CPUMODEL_NO_NETWORK") == "1":
    def _refuse(self, address, *args, **kwargs):
        raise OSError("network access in an offline test: %r" % (address,))

    socket.socket.connect = _refuse  # type: ignore[assignment]
    socket.socket.connect_ex = _refuse  # type: ignore[assignment]
    socket.create_connection = lambda *a, **k: _refuse(None, a)  # type: ignore[assignment]
