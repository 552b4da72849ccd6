"""The faults annotation a user puts on a node (`core/fault_annotation.py`)."""

from __future__ import annotations

from datetime import UTC, datetime

from dra_kwok.core.fault_annotation import RequestedFault, merge_faults, parse_faults

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def test_entries_with_and_without_driver_and_time_are_read() -> None:
    entries, problems = parse_faults("gpu-0=NoExecute@2026-12-01T09:00:00Z, gpu.nvidia.com/gpu-1=Remove,,")
    assert problems == []
    assert entries == [
        RequestedFault(None, "gpu-0", "NoExecute", datetime(2026, 12, 1, 9, 0, tzinfo=UTC)),
        RequestedFault("gpu.nvidia.com", "gpu-1", "Remove"),
    ]


def test_a_bad_entry_is_named_with_the_fix_and_the_good_ones_still_count() -> None:
    entries, problems = parse_faults("gpu-0=Broken,gpu-1=NoSchedule,GPU_2=Remove,gpu-3,gpu-4=NoExecute@yesterday")
    assert [e.device for e in entries] == ["gpu-1"]
    assert problems[0] == "fault 'gpu-0=Broken': effect must be NoSchedule, NoExecute or Remove (got 'Broken')"
    assert problems[1].startswith("fault 'GPU_2=Remove': device name 'GPU_2'")
    assert problems[2] == "fault 'gpu-3': write DEVICE=EFFECT, e.g. gpu-0=NoExecute"
    assert "is not RFC 3339; write e.g. 2026-12-01T10:00:00Z" in problems[3]


def test_merging_stamps_new_entries_replaces_same_device_and_removes() -> None:
    current = "gpu-0=NoSchedule@2026-12-01T08:00:00Z,gpu-1=Remove@2026-12-01T08:00:00Z"
    value, problems = merge_faults(current, [RequestedFault(None, "gpu-0", "NoExecute")], ["gpu-1"], NOW)
    assert (value, problems) == ("gpu-0=NoExecute@2026-12-01T10:00:00Z", [])
    value, _ = merge_faults(value, [], ["gpu-0"], NOW)
    assert value == ""
