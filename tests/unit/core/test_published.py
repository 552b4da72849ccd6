from dra_kwok.core.published import MAX_REPORTED, dropped_fields


def test_a_field_missing_from_the_response_is_reported_with_its_path() -> None:
    sent = {"devices": [{"name": "a", "bindingConditions": ["Ready"], "attributes": {"x": {"int": 1}}}]}
    stored = {"devices": [{"name": "a", "attributes": {"x": {"int": 1}}}]}
    assert dropped_fields(sent, stored) == ["spec.devices[0].bindingConditions"]


def test_rewritten_values_added_defaults_and_empty_values_are_not_dropping() -> None:
    sent = {"devices": [{"name": "a", "capacity": {"memory": {"value": "1024Mi"}}, "taints": [], "allNodes": False}]}
    stored = {"devices": [{"name": "a", "capacity": {"memory": {"value": "1Gi"}}, "extra": "default"}]}
    assert dropped_fields(sent, stored) == []


def test_a_whole_list_entry_dropped_and_the_report_is_bounded() -> None:
    sent = {"sharedCounters": [{"name": "c"}], "devices": [{"name": f"d{i}", "x": 1} for i in range(20)]}
    stored = {"sharedCounters": [], "devices": [{"name": f"d{i}"} for i in range(20)]}
    found = dropped_fields(sent, stored)
    assert found[0] == "spec.sharedCounters[0]"
    assert found[1] == "spec.devices[0].x"
    assert len(found) == MAX_REPORTED
