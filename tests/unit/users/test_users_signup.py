"""The sign-up saga's decisions: next step, compensation, recovery."""
from services.users.signup import (
    Signup, SignupState as S, Step, Undo, compensation, next_step, on_failure, orphan_matches,
    recovery_plan)


def saga(state, reached=None, user_id="kc-1"):
    return Signup("sg-1", "alice", "alice@example.test", state, user_id, reached or state,
                  created_at_ms=1_000_000)


def test_forward_steps_run_in_order_and_enable_the_identity_last():
    state, steps = S.PENDING, []
    while (step := next_step(state)) is not None:
        steps.append(step[0])
        state = step[1]
    assert steps == [Step.CREATE_IDENTITY, Step.GRANT_ROLE, Step.CREATE_PROFILE,
                     Step.OPEN_WALLETS, Step.ENABLE_IDENTITY]
    assert state is S.COMPLETED


def test_keycloak_refusing_the_identity_rejects_with_nothing_to_undo():
    assert on_failure(saga(S.PENDING, user_id=None), permanent_identity_refusal=True) is S.REJECTED


def test_failures_before_wallets_are_compensated():
    for state in (S.PENDING, S.IDENTITY_CREATED, S.ROLE_GRANTED, S.PROFILE_CREATED):
        assert on_failure(saga(state), permanent_identity_refusal=False) is S.COMPENSATING


def test_failure_to_enable_is_completed_forward():
    assert on_failure(saga(S.WALLETS_OPENED), False) is S.WALLETS_OPENED
    assert recovery_plan(saga(S.WALLETS_OPENED)) == "forward"


def test_recovery_compensates_everything_else_in_flight():
    for state in (S.PENDING, S.IDENTITY_CREATED, S.ROLE_GRANTED, S.PROFILE_CREATED,
                  S.COMPENSATING):
        assert recovery_plan(saga(state)) == "compensate"
    for state in (S.COMPLETED, S.REJECTED, S.ROLLED_BACK):
        assert recovery_plan(saga(state)) == "none"


def test_compensation_undoes_what_was_reached_newest_first():
    assert compensation(saga(S.COMPENSATING, reached=S.IDENTITY_CREATED)) == [
        Undo.DELETE_IDENTITY]
    assert compensation(saga(S.COMPENSATING, reached=S.ROLE_GRANTED)) == [
        Undo.DELETE_PROFILE, Undo.DELETE_IDENTITY]
    assert compensation(saga(S.COMPENSATING, reached=S.PROFILE_CREATED)) == [
        Undo.DELETE_PROFILE, Undo.DELETE_IDENTITY, Undo.ANNOUNCE_ROLLBACK]


def test_crash_before_the_identity_id_was_recorded_looks_for_an_orphan():
    assert compensation(saga(S.COMPENSATING, reached=S.PENDING, user_id=None)) == [
        Undo.FIND_AND_DELETE_ORPHAN_IDENTITY]


def test_an_orphan_is_only_a_disabled_user_with_our_name_and_email_created_after_us():
    ours = {"username": "alice", "email": "Alice@example.test", "enabled": False,
            "createdTimestamp": 1_000_500}
    s = saga(S.PENDING, user_id=None)
    assert orphan_matches(s, ours)
    assert not orphan_matches(s, {**ours, "enabled": True})
    assert not orphan_matches(s, {**ours, "email": "bob@example.test"})
    assert not orphan_matches(s, {**ours, "createdTimestamp": 1_000_000 - 120_000})
