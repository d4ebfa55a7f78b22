"""The [routing], [limits] and [budget] profile sections: bounds and unknown keys named by key and value."""

from __future__ import annotations

import pytest

from edged.config import parse_profile
from edged.errors import ConfigError


def test_routing_section_with_weights_parses() -> None:
    profile = parse_profile(
        {
            "routing": {
                "router_threshold": 0.3,
                "confidence_threshold": 0.6,
                "cascade_tokens": 6,
                "score_weights": {"bias": -1.0, "router_logit": 0.8, "mean_logprob": 1.5},
            },
            "limits": {"cpu_percent_max": 70.0, "sample_interval_s": 0.5},
            "budget": {"tokens_per_day": 200_000},
        }
    )
    assert profile.routing.score_weights is not None
    assert profile.routing.score_weights.mean_logprob == 1.5
    assert profile.routing.score_weights.min_logprob == 0.0
    assert profile.limits.sample_interval_s == 0.5
    assert profile.budget.tokens_per_day == 200_000


@pytest.mark.parametrize(
    ("raw", "key", "value"),
    [
        ({"routing": {"router_threshold": 1.5}}, "routing.router_threshold", "1.5"),
        ({"routing": {"cascade_tokens": 0}}, "routing.cascade_tokens", "0"),
        ({"routing": {"score_weights": {"bias": 500.0}}}, "routing.score_weights.bias", "500.0"),
        ({"routing": {"score_weights": {"gamma": 1.0}}}, "routing.score_weights.gamma", "unknown key"),
        ({"routing": {"router_model": ".."}}, "routing.router_model", "'..'"),
        ({"limits": {"sample_interval_s": 0.0}}, "limits.sample_interval_s", "0.0"),
        ({"limits": {"load_average_per_cpu_max": -1}}, "limits.load_average_per_cpu_max", "-1"),
        ({"budget": {"requests_per_hour": -1}}, "budget.requests_per_hour", "-1"),
    ],
)
def test_bad_values_name_key_and_value(raw: dict[str, object], key: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_profile(raw, "p.toml")
    message = str(caught.value)
    assert f"p.toml: {key} = " in message
    assert value in message
