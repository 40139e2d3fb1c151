"""vlrl.api helpers: overrides as a list or a mapping, applied to a copy."""

from __future__ import annotations

from vlrl.api import override_list, with_overrides
from vlrl.config import RewardConfig


def test_overrides_apply_to_a_copy_and_leave_the_given_config_alone():
    given = RewardConfig(per_task={"count": [{"name": "number"}]})
    changed = with_overrides(given, {"per_task.count": [{"name": "accuracy"}], "workers": 0})
    assert changed.per_task["count"][0]["name"] == "accuracy" and changed.workers == 0
    assert given.per_task == {"count": [{"name": "number"}]} and given.workers == 2


def test_override_list_writes_mapping_values_as_yaml_readable_text():
    assert override_list({"a.b": 3, "c": "x y", "d": [{"name": "f"}]}) == ['a.b=3', 'c=x y', 'd=[{"name": "f"}]']
    assert override_list(["a=1"]) == ["a=1"] and override_list(None) == []
