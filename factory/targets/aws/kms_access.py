"""May another account use a KMS key? Needed before sharing an AMI encrypted with it (`share_with`).

An account given launch permission on an encrypted AMI can launch it only if it may also use the AMI's KMS
key: Decrypt, DescribeKey, CreateGrant, GenerateDataKeyWithoutPlaintext and ReEncrypt (AWS, "Share an
AMI with specific AWS accounts": "allow the target accounts to use the KMS key"). Either the key policy
says so for the account, or a grant does. These are pure judgements on what KMS returned.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable
from typing import Any

# What launching an instance from a shared encrypted AMI needs of the key (one grant with all of them).
GRANT_OPERATIONS: tuple[str, ...] = (
    "Decrypt",
    "DescribeKey",
    "CreateGrant",
    "GenerateDataKeyWithoutPlaintext",
    "ReEncryptFrom",
    "ReEncryptTo",
)


def account_principal(account: str) -> str:
    return f"arn:aws:iam::{account}:root"


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _principals(statement: dict[str, Any]) -> list[str]:
    principal = statement.get("Principal")
    if principal == "*":
        return ["*"]
    if isinstance(principal, dict):
        return _as_list(principal.get("AWS"))
    return []


def _covers(patterns: Iterable[str], action: str) -> bool:
    return any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in patterns)


def policy_allows(policy_text: str, account: str, key_arn: str) -> bool:
    """Does the key policy let `account` (its root, i.e. the account's IAM policies) do every operation?

    Unconditional Allow statements only: a Condition may narrow the statement to what the factory cannot
    judge, so it is not counted; an explicit Deny of any needed operation for the account wins.
    """
    try:
        policy = json.loads(policy_text)
    except ValueError:
        return False
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    who = {account, account_principal(account), "*"}
    needed = [f"kms:{op}" for op in GRANT_OPERATIONS]
    allowed: set[str] = set()
    for st in statements:
        if not isinstance(st, dict) or not who & set(_principals(st)):
            continue
        resources = _as_list(st.get("Resource", "*"))
        if not _covers(resources, key_arn):
            continue
        actions = _as_list(st.get("Action"))
        matched = {a for a in needed if _covers(actions, a)}
        if st.get("Effect") == "Deny" and matched:
            return False
        if st.get("Effect") == "Allow" and not st.get("Condition"):
            allowed |= matched
    return allowed == set(needed)


def grant_for(grants: Iterable[dict[str, Any]], account: str) -> str | None:
    """The id of a grant that gives `account` every needed operation, if there is one."""
    for grant in grants:
        if grant.get("GranteePrincipal") not in (account, account_principal(account)):
            continue
        if set(GRANT_OPERATIONS) <= set(grant.get("Operations", [])):
            return str(grant.get("GrantId", ""))
    return None
