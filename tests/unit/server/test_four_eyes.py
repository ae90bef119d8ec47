"""The four-eyes rule compares users, so a requestor's own API token cannot approve their request either."""

from __future__ import annotations

import pytest

from vigil.core.actions import SelfApproval, check_four_eyes
from vigil.server.scope import username_of


@pytest.mark.parametrize("requestor,approver", [
    ("alice", "alice"), ("alice (API token 7)", "alice"), ("alice", "alice (API token 9)"),
])
def test_the_requesting_user_is_refused_whichever_credential_they_use(requestor: str, approver: str) -> None:
    with pytest.raises(SelfApproval, match="four-eyes rule: alice requested action a-1") as e:
        check_four_eyes("a-1", username_of(requestor), username_of(approver))
    assert e.value.field == "ActionIds"


def test_another_user_may_approve() -> None:
    check_four_eyes("a-1", username_of("alice (API token 7)"), username_of("bob"))
    check_four_eyes("a-1", username_of("alice"), username_of("alice2"))
