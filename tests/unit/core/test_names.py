from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from dra_kwok.core import names

SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class TestDnsLabel:
    @pytest.mark.parametrize("value", ["a", "gpu-0", "nvidia-h100-7", "0", "a" * 63])
    def test_accepts_labels(self, value: str) -> None:
        assert names.dns_label_problem(value) is None

    def test_rejects_64_characters_naming_the_length(self) -> None:
        assert names.dns_label_problem("a" * 64) == "must be at most 63 characters (has 64)"

    def test_rejects_empty(self) -> None:
        assert names.dns_label_problem("") == "must not be empty"

    @pytest.mark.parametrize("value", ["GPU", "gpu_0", "-gpu", "gpu-", "gpu.0", "gpu 0", "gpü"])
    def test_rejects_non_label_characters(self, value: str) -> None:
        assert names.dns_label_problem(value) == (
            "must be a DNS label: lowercase letters, digits and '-', starting and ending with a letter or digit"
        )


class TestDnsSubdomain:
    @pytest.mark.parametrize("value", ["a", "node-1", "gpu.example.com", "a" * 253, ".".join(["a" * 63] * 4)[:253]])
    def test_accepts_subdomains(self, value: str) -> None:
        assert names.dns_subdomain_problem(value) is None

    def test_rejects_254_characters(self) -> None:
        assert names.dns_subdomain_problem("a" * 254) == "must be at most 253 characters (has 254)"

    @pytest.mark.parametrize("value", ["a..b", ".a", "a.", "a.-b", "A.b", "a_b", "a/b"])
    def test_rejects_malformed(self, value: str) -> None:
        problem = names.dns_subdomain_problem(value)
        assert problem is not None and problem.startswith("must be a DNS subdomain")


class TestDriverName:
    @pytest.mark.parametrize("value", ["gpu.example.com", "karpenter.sh.dra-kwok-driver", "driver", "a" * 63])
    def test_accepts_lowercase_subdomains_up_to_63(self, value: str) -> None:
        assert names.driver_name_problem(value) is None

    def test_rejects_64_characters(self) -> None:
        assert names.driver_name_problem("a" * 64) == "must be at most 63 characters (has 64)"

    def test_rejects_the_seed_driver_with_a_slash(self) -> None:
        problem = names.driver_name_problem("karpenter.sh/dra-kwok-driver")
        assert problem is not None and problem.startswith("must be a DNS subdomain")

    def test_rejects_upper_case_as_the_apiserver_warns(self) -> None:
        assert names.driver_name_problem("GPU.example.com") == (
            "should be lowercase (the apiserver warns about upper case driver names)"
        )

    @pytest.mark.parametrize(
        ("bad", "suggestion"),
        [
            ("karpenter.sh/dra-kwok-driver", "karpenter.sh.dra-kwok-driver"),
            ("GPU.Example.COM", "gpu.example.com"),
            ("my_driver", "my.driver"),
            ("-gpu-.example.com-", "gpu.example.com"),
            ("a//b", "a.b"),
            ("0:-:0", "0.0"),  # a part of only dashes must not leave two dots
            ("///", "example.com"),
            ("", "example.com"),
        ],
    )
    def test_suggests_a_valid_driver_name(self, bad: str, suggestion: str) -> None:
        assert names.suggest_driver_name(bad) == suggestion
        assert names.driver_name_problem(suggestion) is None

    def test_suggestion_for_an_overlong_name_fits_63(self) -> None:
        suggestion = names.suggest_driver_name("x/" * 100)
        assert len(suggestion) <= 63
        assert names.driver_name_problem(suggestion) is None


class TestQualifiedName:
    @pytest.mark.parametrize(
        "value",
        [
            "model",
            "compute_capability",
            "computeCapability",
            "_private",
            "a" * 32,
            "gpu.example.com/model",
            "GPU.Example.com/model",  # the domain is checked lowercased
            f"{'d' * 63}/x",
            f"gpu.example.com/{'a' * 32}",
        ],
    )
    def test_accepts(self, value: str) -> None:
        assert names.qualified_name_problem(value) is None

    @pytest.mark.parametrize(
        ("value", "problem"),
        [
            ("compute-capability", "must be a C identifier: letters, digits and '_', not starting with a digit"),
            ("7nm", "must be a C identifier: letters, digits and '_', not starting with a digit"),
            ("a" * 33, "must be at most 32 characters (has 33)"),
            ("", "must not be empty"),
            ("a/b/c", "must not contain more than one slash"),
            ("/model", "the domain before '/' must not be empty"),
            (f"{'d' * 64}/x", "the domain before '/' must be at most 63 characters (has 64)"),
            ("bad_domain/x", "the domain before '/' must be a DNS subdomain"),
            ("gpu.example.com/", "the name after '/' must not be empty"),
            ("gpu.example.com/compute-capability", "the name after '/' must be a C identifier"),
            (f"gpu.example.com/{'a' * 33}", "the name after '/' must be at most 32 characters (has 33)"),
        ],
    )
    def test_rejects_with_the_apiserver_rule(self, value: str, problem: str) -> None:
        found = names.qualified_name_problem(value)
        assert found is not None and found.startswith(problem)

    @pytest.mark.parametrize(
        ("bad", "suggestions"),
        [
            ("compute-capability", ["compute_capability", "computeCapability"]),
            ("dsp-slices", ["dsp_slices", "dspSlices"]),
            (
                "gpu.example.com/compute-capability",
                ["gpu.example.com/compute_capability", "gpu.example.com/computeCapability"],
            ),
            ("3d-engine", ["_3d_engine", "_3dEngine"]),
            ("memory size", ["memory_size", "memorySize"]),
            ("model", ["model"]),
            ("---", []),
        ],
    )
    def test_suggests_identifiers(self, bad: str, suggestions: list[str]) -> None:
        assert names.suggest_identifiers(bad) == suggestions

    def test_suggestions_are_cut_to_32_characters(self) -> None:
        suggestions = names.suggest_identifiers("-".join(["word"] * 20))
        assert suggestions and all(len(s) <= 32 and names.qualified_name_problem(s) is None for s in suggestions)


class TestLabelNameAndValue:
    @pytest.mark.parametrize(
        "value", ["type", "node.kubernetes.io/instance-type", "kwok.x-k8s.io/node", "A_b.c-D", "a" * 63]
    )
    def test_accepts_label_names(self, value: str) -> None:
        assert names.label_name_problem(value) is None

    @pytest.mark.parametrize(
        ("value", "problem"),
        [
            ("a/b/c", "must not contain more than one slash"),
            ("Bad_Prefix/x", "the prefix before '/' must be a DNS subdomain"),
            ("example.com/", "the name must not be empty"),
            ("", "the name must not be empty"),
            ("a" * 64, "the name must be at most 63 characters (has 64)"),
            ("-x", "the name must be alphanumeric"),
            ("a b", "the name must be alphanumeric"),
        ],
    )
    def test_rejects_label_names(self, value: str, problem: str) -> None:
        found = names.label_name_problem(value)
        assert found is not None and found.startswith(problem)

    @pytest.mark.parametrize("value", ["", "kwok", "g5.48xlarge", "a_b-c.d", "a" * 63])
    def test_accepts_label_values(self, value: str) -> None:
        assert names.label_value_problem(value) is None

    @pytest.mark.parametrize(
        ("value", "problem"),
        [
            ("a" * 64, "must be at most 63 characters (has 64)"),
            ("a b", "must be empty or alphanumeric"),
            ("-a", "must be empty or alphanumeric"),
            ("a/b", "must be empty or alphanumeric"),
        ],
    )
    def test_rejects_label_values(self, value: str, problem: str) -> None:
        found = names.label_value_problem(value)
        assert found is not None and found.startswith(problem)


class TestSemver:
    @pytest.mark.parametrize("value", ["0.0.0", "1.2.3", "1.2.3-rc.1", "1.0.0-alpha-1", "1.0.0+build.5", "10.20.30"])
    def test_accepts(self, value: str) -> None:
        assert names.semver_problem(value) is None

    @pytest.mark.parametrize("value", ["1.0", "9.0", "v1.2.3", "01.2.3", "1.2.3-01", "1.2.3-", "1.2", ""])
    def test_rejects(self, value: str) -> None:
        assert names.semver_problem(value) == "must be a semantic version (semver 2.0.0) such as 1.2.3 or 1.2.3-rc.1"

    def test_rejects_more_than_64_characters(self) -> None:
        value = "1.2.3-" + "a" * 59
        assert names.semver_problem(value) == "must be at most 64 characters (has 65)"


class TestBoundedNames:
    def test_keeps_a_name_that_fits(self) -> None:
        assert names.bounded("node-1-devices", 253) == "node-1-devices"

    def test_shortens_with_a_hash_of_the_whole_name(self) -> None:
        long = "n" * 300
        out = names.bounded(long, 253)
        assert len(out) == 253
        assert out == "n" * 244 + "-" + names.short_hash(long)
        assert SUBDOMAIN.match(out)

    def test_distinguishes_names_that_share_the_kept_prefix(self) -> None:
        a, b = "n" * 300 + "a", "n" * 300 + "b"
        assert names.bounded(a, 253) != names.bounded(b, 253)

    def test_never_leaves_a_dot_or_dash_before_the_hash(self) -> None:
        name = "a" * 243 + ".-" + "b" * 20
        out = names.bounded(name, 253)
        assert SUBDOMAIN.match(out), out
        assert not out[: -len(names.short_hash(name)) - 1].endswith((".", "-"))

    def test_short_hash_is_eight_hex_digits_and_deterministic(self) -> None:
        assert re.fullmatch(r"[0-9a-f]{8}", names.short_hash("node-1"))
        assert names.short_hash("node-1") == names.short_hash("node-1") != names.short_hash("node-2")

    def test_label_value_for_a_valid_value_is_unchanged(self) -> None:
        assert names.label_value_for("node-1") == "node-1"

    def test_label_value_for_a_253_character_node_is_a_valid_label_value(self) -> None:
        node = ".".join(["a" * 63] * 4)[:253]
        value = names.label_value_for(node)
        assert names.label_value_problem(value) is None
        assert value != names.label_value_for(node[:-1] + "b")


@pytest.mark.parametrize(
    "check",
    [
        names.dns_label_problem,
        names.dns_subdomain_problem,
        names.driver_name_problem,
        names.c_identifier_problem,
        names.qualified_name_problem,
        names.label_name_problem,
        names.label_value_problem,
    ],
)
def test_a_trailing_newline_is_not_part_of_a_valid_name(check: Callable[[str], str | None]) -> None:
    """Python's `$` also matches before a final newline (a YAML `|` block leaves one); Go's does not."""
    assert check("abc") is None
    assert check("abc\n") is not None


def test_semver_and_string_limits_follow_go_semantics() -> None:
    assert names.semver_problem("1.2.3\n") is not None
    assert names.semver_problem("1\u0661.0.0") is not None  # Arabic-Indic digits are not \d in Go
    assert names.string_attribute_problem("x" * 64) is None
    assert names.string_attribute_problem("x" * 65) == "must be at most 64 bytes of UTF-8 (has 65)"
    assert names.string_attribute_problem("\u00fc" * 32) is None
    assert (
        names.string_attribute_problem("\u00fc" * 33)
        == "must be at most 64 bytes of UTF-8 (has 66 bytes, 33 characters)"
    )
