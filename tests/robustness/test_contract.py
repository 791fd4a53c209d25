"""The contract's label check follows the response's own label rule, so it holds for the bundled model
(operating point) as well as for the tiny test models (argmax)."""

from __future__ import annotations

import json

import pytest

from .contract import check_body, labels_by_rule

LABELS = ["normal", "benign", "malignant"]
RULE = ("normal if p(normal) >= 0.910, else malignant if p(malignant | lesion) >= 0.230, else benign "
        "(malignant sensitivity >= 0.90 and <= 2% of lesions called normal on 1390 out-of-site predictions)")


@pytest.mark.parametrize("probs, label", [
    ({"normal": 0.647, "benign": 0.219, "malignant": 0.134}, "malignant"),  # 0.134 / 0.353 = 0.38 >= 0.23
    ({"normal": 0.0, "benign": 0.80, "malignant": 0.20}, "benign"),
    ({"normal": 0.95, "benign": 0.04, "malignant": 0.01}, "normal"),
])
def test_the_operating_point_rule_read_from_the_response(probs, label):
    assert labels_by_rule(RULE, probs, LABELS) == {label}


def test_without_an_operating_point_the_label_is_the_most_probable_class():
    assert labels_by_rule("argmax: the most probable class", {"normal": 0.5, "benign": 0.3, "malignant": 0.2},
                          LABELS) == {"normal"}


def test_a_probability_on_a_printed_threshold_may_go_either_way():
    # p(malignant | lesion) = 0.2302 rounds to the printed 0.230: both labels are within the rule's rounding
    probs = {"normal": 0.0, "benign": 0.7698, "malignant": 0.2302}
    assert labels_by_rule(RULE, probs, LABELS) == {"benign", "malignant"}


def _body(label: str, probs: dict) -> str:
    return json.dumps({"label": label, "label_rule": RULE, "operating_point": "sensitive", "probabilities": probs,
                       "model": {"name": "m", "version": "v"},
                       "disclaimer": "Research use only. Not a medical device."}) + "\n"


def test_a_label_that_breaks_its_own_rule_fails_the_contract():
    probs = {"normal": 0.647, "benign": 0.219, "malignant": 0.134}
    check_body(200, _body("malignant", probs), LABELS, what="as served")
    with pytest.raises(AssertionError, match="breaks its rule"):
        check_body(200, _body("normal", probs), LABELS, what="argmax instead of the rule")
