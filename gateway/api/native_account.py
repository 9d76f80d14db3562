"""The caller's account on the native API: who they are, balances, ledger,
deposits, withdrawals (one-time-password step-up) and API keys."""
from __future__ import annotations

from gateway.auth import client_ip
from gateway.api.native import (NEEDS_READ, NEEDS_TOKEN, NEEDS_WITHDRAW, PRIVATE, TAG_ACCOUNT,
                                TAG_KEYS, TAG_WALLET, TOKEN_ONLY, blueprint, caller, reply)
from gateway.schemas import (ApiKey, ApiKeyCreated, ApiKeyList, ApiKeyPath, ApiKeyRequest,
                             AssetPath, Balance, Balances, Deposit, DepositAddress, Deposits,
                             DepositsQuery, Ledger, LedgerEntry, Me, PageQuery, Withdrawal,
                             WithdrawalPath, WithdrawalRequest, Withdrawals, WithdrawalsQuery,
                             epoch_ms)


@blueprint.get("/me", tags=[TAG_ACCOUNT], security=PRIVATE, openapi_extensions=NEEDS_READ,
               responses={200: Me},
               summary="Who the credentials belong to, and what they may do")
def me():
    from gateway.app import rpc
    who = caller("read")
    if who.person is not None:
        person = who.person
        return reply(Me(user_id=person.user_id, username=person.username, state=person.state,
                        roles=list(person.roles), strong_auth=person.strong_auth, auth="token",
                        permissions=list(who.permissions)))
    with rpc() as services:
        state = services.users.get_account_state(who.user_id)
    return reply(Me(user_id=who.user_id, state=state["state"], roles=[], strong_auth=False,
                    auth="api_key", permissions=list(who.permissions)))


@blueprint.get("/balances", tags=[TAG_ACCOUNT], security=PRIVATE, openapi_extensions=NEEDS_READ,
               responses={200: Balances},
               summary="Available and locked (held for open orders and withdrawals), per asset")
def balances():
    from gateway.app import rpc
    who = caller("read")
    with rpc() as services:
        found = services.wallets.balances(who.user_id)["balances"]
    return reply(Balances(balances=[Balance(asset=asset, **amounts)
                                    for asset, amounts in sorted(found.items())]))


def _entry(entry: dict) -> LedgerEntry:
    return LedgerEntry.model_validate({**entry, "created_at": epoch_ms(entry["created_at"])})


def _cursor(value) -> int | None:
    return None if value is None else int(value)


@blueprint.get("/ledger/<asset>", tags=[TAG_ACCOUNT], security=PRIVATE,
               openapi_extensions=NEEDS_READ, responses={200: Ledger},
               summary="The asset account's journal, newest first; pass next_cursor for more")
def ledger(path: AssetPath, query: PageQuery):
    from gateway.app import rpc
    who = caller("read")
    with rpc() as services:
        page = services.wallets.ledger(who.user_id, path.asset,
                                       None if query.cursor is None else str(query.cursor),
                                       query.limit)
    return reply(Ledger(asset=path.asset, entries=[_entry(e) for e in page["entries"]],
                        next_cursor=_cursor(page["next_cursor"])))


@blueprint.get("/deposit-addresses/<asset>", tags=[TAG_ACCOUNT], security=PRIVATE,
               openapi_extensions=NEEDS_READ,
               responses={200: DepositAddress}, summary="The caller's deposit address for an asset")
def deposit_address(path: AssetPath):
    from gateway.app import rpc
    who = caller("read")
    with rpc() as services:
        found = services.wallets.deposit_address(who.user_id, path.asset)
    return reply(DepositAddress(asset=found["asset"], address=found["address"],
                                created_at=epoch_ms(found["created_at"])))


def _deposits(entries: list[dict], asset: str) -> list[Deposit]:
    return [Deposit(transaction_id=e["transaction_id"], asset=asset,
                    amount=e["available_delta"], txid=e.get("details", {}).get("txid"),
                    address=e.get("details", {}).get("address"),
                    created_at=epoch_ms(e["created_at"]))
            for e in entries if e["type"] == "deposit"]


@blueprint.get("/deposits", tags=[TAG_ACCOUNT], security=PRIVATE, openapi_extensions=NEEDS_READ,
               responses={200: Deposits},
               summary="Credited deposits, newest first: of one asset (paged through its "
                       "ledger), or the latest of every asset")
def deposits(query: DepositsQuery):
    from gateway.app import rpc
    who = caller("read")
    with rpc() as services:
        if query.asset is not None:
            page = services.wallets.ledger(who.user_id, query.asset,
                                           None if query.cursor is None else str(query.cursor),
                                           query.limit)
            return reply(Deposits(deposits=_deposits(page["entries"], query.asset),
                                  next_cursor=_cursor(page["next_cursor"])))
        found = []
        for asset in sorted(services.wallets.balances(who.user_id)["balances"]):
            page = services.wallets.ledger(who.user_id, asset, None, query.limit)
            found += _deposits(page["entries"], asset)
    found.sort(key=lambda d: (d.created_at, d.transaction_id), reverse=True)
    return reply(Deposits(deposits=found[:query.limit]))


def _withdrawal(found: dict) -> Withdrawal:
    return Withdrawal.model_validate({**found, "created_at": epoch_ms(found.get("created_at")),
                                      "updated_at": epoch_ms(found.get("updated_at"))})


@blueprint.post("/withdrawals", tags=[TAG_WALLET], security=PRIVATE,
                openapi_extensions=NEEDS_WITHDRAW, responses={201: Withdrawal},
                summary="Request a withdrawal (idempotent by ref): a token needs a login that "
                        "passed the one-time password (else STRONG_AUTH_REQUIRED / "
                        "STRONG_AUTH_STALE); a key needs the withdraw permission")
def request_withdrawal(body: WithdrawalRequest):
    from gateway.app import rpc
    who = caller("withdraw")
    with rpc() as services:
        # A key's withdraw permission, allow-list and account state were
        # checked by users.verify_request; a person's session needs the OTP.
        if who.person is not None:
            services.users.authorize_withdrawal(who.person.token, client_ip())
        found = services.wallets.request_withdrawal(who.user_id, body.asset, body.address,
                                                    body.amount, body.ref)
    return reply(_withdrawal({**found, "ref": body.ref}), 201)


@blueprint.get("/withdrawals", tags=[TAG_WALLET], security=PRIVATE, openapi_extensions=NEEDS_READ,
               responses={200: Withdrawals},
               summary="The caller's latest withdrawals, newest first")
def list_withdrawals(query: WithdrawalsQuery):
    from gateway.app import rpc
    who = caller("read")
    with rpc() as services:
        found = services.wallets.withdrawals(who.user_id, query.limit)
    return reply(Withdrawals(withdrawals=[_withdrawal(w) for w in found]))


@blueprint.get("/withdrawals/<withdrawal_id>", tags=[TAG_WALLET], security=PRIVATE,
               openapi_extensions=NEEDS_READ,
               responses={200: Withdrawal}, summary="One of the caller's withdrawals")
def get_withdrawal(path: WithdrawalPath):
    from gateway.app import rpc
    who = caller("read")
    with rpc() as services:
        return reply(_withdrawal(services.wallets.withdrawal(path.withdrawal_id, who.user_id)))


@blueprint.delete("/withdrawals/<withdrawal_id>", tags=[TAG_WALLET], security=PRIVATE,
                  openapi_extensions=NEEDS_WITHDRAW, responses={200: Withdrawal},
                  summary="Cancel a pending withdrawal (its hold is released)")
def cancel_withdrawal(path: WithdrawalPath):
    from gateway.app import rpc
    who = caller("withdraw")
    with rpc() as services:
        return reply(_withdrawal(services.wallets.cancel_withdrawal(who.user_id,
                                                                    path.withdrawal_id)))


def _key(key: dict, model=ApiKey):
    return model.model_validate({**key, "created_at": epoch_ms(key.get("created_at")),
                                 "expires_at": epoch_ms(key.get("expires_at"))})


@blueprint.post("/api-keys", tags=[TAG_KEYS], security=TOKEN_ONLY, openapi_extensions=NEEDS_TOKEN,
                responses={201: ApiKeyCreated},
                summary="Create an API key; its secret is in this answer only")
def create_api_key(body: ApiKeyRequest):
    from gateway.app import rpc
    who = caller(token_only=True)
    with rpc() as services:
        created = services.users.create_api_key(who.person.token,
                                                body.model_dump(exclude_none=True))
    return reply(_key(created, ApiKeyCreated), 201)


@blueprint.get("/api-keys", tags=[TAG_KEYS], security=TOKEN_ONLY, openapi_extensions=NEEDS_TOKEN,
               responses={200: ApiKeyList},
               summary="The caller's API keys (never their secrets)")
def list_api_keys():
    from gateway.app import rpc
    who = caller(token_only=True)
    with rpc() as services:
        keys = services.users.list_api_keys(who.person.token)
    return reply(ApiKeyList(api_keys=[_key(k) for k in keys]))


@blueprint.delete("/api-keys/<api_key>", tags=[TAG_KEYS], security=TOKEN_ONLY,
                  openapi_extensions=NEEDS_TOKEN,
                  responses={200: ApiKey}, summary="Revoke one of the caller's API keys")
def revoke_api_key(path: ApiKeyPath):
    from gateway.app import rpc
    from gateway.auth import key_cache
    who = caller(token_only=True)
    with rpc() as services:
        revoked = services.users.revoke_api_key(who.person.token, path.api_key)
    # Read-your-writes for the revoking client: this process drops the key
    # now, not when users' api_key_revoked event arrives (the other gateway
    # processes drop it then, docs/security.md); a fetch already in flight
    # is not kept either (evict moves the cache's epoch).
    cache = key_cache()
    if cache is not None:
        cache.evict(key_id=revoked["key_id"])
    return reply(_key(revoked))
