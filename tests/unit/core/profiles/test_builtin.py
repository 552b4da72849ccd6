"""Every profile module's profiles are built in, in the order docs/profiles.md lists them, and
none a test registered lingers (the CRD's enum and the chart's files are generated from them)."""

from __future__ import annotations

from dra_kwok.core.profiles import PROFILES, amd, builtin, cpu, example, intel, nvidia, tpu


def test_every_profile_module_is_built_in() -> None:
    modules = (nvidia, amd, intel, tpu, cpu, example)
    assert [p.name for p in builtin.ALL] == [p.name for m in modules for p in m.PROFILES]
    assert set(PROFILES) == {p.name for p in builtin.ALL}
