"""The pure judgements on KMS answers: does a key policy or a grant let another account use the key?"""

from __future__ import annotations

import json
from typing import Any

import pytest

from factory.targets.aws.kms_access import GRANT_OPERATIONS, account_principal, grant_for, policy_allows

ARN = "arn:aws:kms:us-east-1:222222222222:key/1234abcd-12ab-34cd-56ef-1234567890ab"
PARTNER = "444455556666"
ALL_NEEDED = ["kms:Decrypt", "kms:DescribeKey", "kms:CreateGrant", "kms:ReEncrypt*", "kms:GenerateDataKey*"]


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _allow(principal: Any, action: Any = ALL_NEEDED, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Principal": principal, "Action": action, "Resource": "*", **extra}


@pytest.mark.parametrize(
    ("policy", "allowed"),
    [
        (_policy(_allow({"AWS": account_principal(PARTNER)})), True),
        (_policy(_allow({"AWS": [PARTNER]}, "kms:*")), True),
        (_policy(_allow("*", "*")), True),
        (_policy(_allow({"AWS": "arn:aws:iam::222222222222:root"}, "kms:*")), False),
        (_policy(_allow({"AWS": account_principal(PARTNER)}, ["kms:Decrypt", "kms:DescribeKey"])), False),
        (
            _policy(
                _allow({"AWS": account_principal(PARTNER)}, ["kms:Decrypt", "kms:DescribeKey"]),
                _allow(
                    {"AWS": account_principal(PARTNER)},
                    ["kms:CreateGrant", "kms:ReEncrypt*", "kms:GenerateDataKey*"],
                ),
            ),
            True,
        ),
        (
            _policy(
                _allow({"AWS": account_principal(PARTNER)}, "kms:*"),
                {"Effect": "Deny", "Principal": "*", "Action": "kms:CreateGrant", "Resource": "*"},
            ),
            False,
        ),
        (
            _policy(
                _allow(
                    {"AWS": account_principal(PARTNER)},
                    "kms:*",
                    Condition={"Bool": {"kms:GrantIsForAWSResource": "true"}},
                )
            ),
            False,
        ),
        (
            _policy({**_allow({"AWS": account_principal(PARTNER)}), "Resource": "arn:aws:kms:*:*:key/other"}),
            False,
        ),
        ("not json", False),
    ],
    ids=[
        "account-root-needed-actions",
        "account-id-kms-star",
        "anyone-anything",
        "only-the-owner",
        "some-actions-missing",
        "actions-spread-over-statements",
        "explicit-deny-wins",
        "conditional-allow-not-counted",
        "other-resource",
        "unparsable-policy",
    ],
)
def test_policy_allows(policy: str, allowed: bool) -> None:
    assert policy_allows(policy, PARTNER, ARN) is allowed


def test_grant_for_needs_every_operation_for_that_account() -> None:
    full = {
        "GrantId": "g1",
        "GranteePrincipal": account_principal(PARTNER),
        "Operations": list(GRANT_OPERATIONS),
    }
    partial = {"GrantId": "g2", "GranteePrincipal": account_principal(PARTNER), "Operations": ["Decrypt"]}
    other = {
        "GrantId": "g3",
        "GranteePrincipal": account_principal("999999999999"),
        "Operations": list(GRANT_OPERATIONS),
    }
    assert grant_for([partial, other, full], PARTNER) == "g1"
    assert grant_for([partial, other], PARTNER) is None
    assert grant_for([], PARTNER) is None
