"""tox's inline plugin for this project: every tox env runs in ONE installed virtualenv.

tox 4 records the env name in ``<env_dir>/.tox-info.json`` and deletes and rebuilds the env
directory whenever another env name uses it, so ``env_dir = {toxworkdir}/shared`` alone
reinstalls torch for every env. The ``shared-virtualenv`` runner compares a fixed name
instead; the python version and the ``deps`` are still compared, so a changed dependency
list still rebuilds the env (``tox -r`` forces it).
"""
from __future__ import annotations

from contextlib import contextmanager

from tox.plugin import impl
from tox.tox_env.info import Info
from tox.tox_env.python.virtual_env.runner import VirtualEnvRunner

SHARED_NAME = "shared"


class _SharedInfo(Info):
    @contextmanager
    def compare(self, value, section, sub_section=None):
        if section == "ToxEnv" and isinstance(value, dict):
            value = dict(value, name=SHARED_NAME)
        with super().compare(value, section, sub_section) as outcome:
            yield outcome


class SharedVirtualEnv(VirtualEnvRunner):
    """A virtualenv runner whose install record does not depend on the env name."""

    @staticmethod
    def id() -> str:
        return "shared-virtualenv"

    @property
    def cache(self) -> Info:
        return _SharedInfo(self.env_dir)


@impl
def tox_register_tox_env(register) -> None:
    register.add_run_env(SharedVirtualEnv)
